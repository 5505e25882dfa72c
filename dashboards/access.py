"""Who may see the dashboard: a pure decision on the logged-in user's ID-token claims.

`jwtriage dashboard` writes the login settings (Streamlit's `[auth]`) and the allow-list
(`[jwtriage_access]`) into the secrets file it gives Streamlit; `app.py` asks `decide`
before any page runs. No `[jwtriage_access]` means login is off (the command only allows
that on a loopback address, or with --insecure-no-login).

Streamlit (Authlib) has verified the ID token's signature, issuer and audience at login;
its cookie then lives 30 days. The token's own `exp` is checked here on every run, as is
its issuer against the configured one: a session outlives neither.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class Decision(enum.Enum):
    ANONYMOUS = "anonymous"  # not logged in: the login page only
    EXPIRED = "expired"  # logged in once, but the ID token has expired (or is not the configured issuer's)
    REFUSED = "refused"  # logged in, and on no allow-list
    ALLOWED = "allowed"


@dataclass(frozen=True)
class AccessRules:
    issuer: str
    user_claim: str = "email"
    groups_claim: str = "groups"
    allowed_users: frozenset[str] = frozenset()
    allowed_groups: frozenset[str] = frozenset()

    @classmethod
    def from_secrets(cls, section: Mapping[str, Any]) -> AccessRules:
        return cls(
            issuer=str(section["issuer"]),
            user_claim=str(section.get("user_claim", "email")),
            groups_claim=str(section.get("groups_claim", "groups")),
            allowed_users=frozenset(str(u) for u in section.get("allowed_users", ())),
            allowed_groups=frozenset(str(g) for g in section.get("allowed_groups", ())),
        )


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return (v for v in value if isinstance(v, str))
    return ()


def decide(user: Mapping[str, Any] | None, rules: AccessRules, now: float) -> Decision:
    """The decision for `user` (the ID token's claims as `st.user` holds them; None when not logged in)."""
    if not user or not user.get("is_logged_in", True):
        return Decision.ANONYMOUS
    exp = user.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= now:
        return Decision.EXPIRED
    if str(user.get("iss", "")).rstrip("/") != rules.issuer.rstrip("/"):
        return Decision.EXPIRED
    name = user.get(rules.user_claim)
    unverified = rules.user_claim == "email" and user.get("email_verified") is False
    if isinstance(name, str) and name in rules.allowed_users and not unverified:
        return Decision.ALLOWED
    if rules.allowed_groups.intersection(_strings(user.get(rules.groups_claim))):
        return Decision.ALLOWED
    return Decision.REFUSED


def who(user: Mapping[str, Any], rules: AccessRules) -> str:
    """How to name the user on the page: the user claim, else `sub`."""
    return str(user.get(rules.user_claim) or user.get("sub") or "?")

"""The cause registry: one record per code, and every surface's labels, colours and cause lists come from it."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest

from pipeline import causes
from pipeline.causes import CAUSES, Attack, Cause

ROOT = Path(__file__).resolve().parent.parent


def test_every_cause_has_one_record_with_every_fact() -> None:
    assert [info.cause for info in CAUSES].count(Cause.STALE_JWKS) == 1
    assert sorted(info.cause for info in CAUSES) == sorted(Cause)
    for info in CAUSES:
        assert info.label and info.meaning and info.remediation, info.cause
        assert re.fullmatch(r"#[0-9a-f]{6}", info.colour), info.cause
        assert info.rotation_damage == bool(info.blame), info.cause  # a rotation cause says whose fault it is


def test_every_attack_has_advice() -> None:
    assert sorted(a.attack for a in causes.ATTACKS) == sorted(Attack)
    assert all(a.advice for a in causes.ATTACKS)
    assert causes.attack_advice("not_an_attack") == ""


def test_rotation_damage_is_the_contracts() -> None:
    """DESIGN.md "Rotation damage": unpublished_key, stale_jwks, retired_key; never unknown_kid."""
    assert set(causes.ROTATION_DAMAGE) == {"unpublished_key", "stale_jwks", "retired_key"}
    assert "unknown_kid" not in causes.ROTATION_DAMAGE
    assert {Cause.UNPUBLISHED_KEY, Cause.STALE_JWKS, Cause.RETIRED_KEY} == causes.KEY_TIMING_CAUSES
    assert causes.STEP_CAUSES == {"added": ("stale_jwks", "unpublished_key"), "removed": ("retired_key",)}
    assert sorted(itertools.chain(*causes.STEP_CAUSES.values())) == sorted(causes.ROTATION_DAMAGE)


def _lab(colour: str) -> tuple[float, float, float]:
    """sRGB hex → CIE L*a*b* (D65)."""
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_the_palette_keeps_causes_apart() -> None:
    """Any two causes differ by at least ΔE*76 = 20 (clearly different at a glance, in a legend or a stack)."""
    for a, b in itertools.combinations(CAUSES, 2):
        distance = sum((p - q) ** 2 for p, q in zip(_lab(a.colour), _lab(b.colour), strict=True)) ** 0.5
        assert distance >= 20, f"{a.cause} {a.colour} and {b.cause} {b.colour} are only {distance:.1f} apart"


def test_the_palette_groups_causes_into_hue_families() -> None:
    """Every cause in one family; a family's colours share a hue (greys: no hue), and the families differ.

    The dashboard's stack and the report's swatches then read as a few groups (rotation damage
    warm, attack-adjacent purple, client or config blue, token time green, not the token's
    fault grey), each told apart within by lightness.
    """
    members = [cause for family in causes.CAUSE_FAMILIES.values() for cause in family]
    assert sorted(members) == sorted(Cause) and len(members) == len(set(members))

    def hue_and_chroma(colour: str) -> tuple[float, float]:
        _, a, b = _lab(colour)
        return math.degrees(math.atan2(b, a)) % 360, math.hypot(a, b)

    def gap(h: float, k: float) -> float:
        return min(abs(h - k), 360 - abs(h - k))

    hues: dict[str, list[float]] = {}
    for name, family in causes.CAUSE_FAMILIES.items():
        shades = [hue_and_chroma(causes.CAUSE_COLOURS[c]) for c in family]
        if name == "not the token's fault":
            assert all(chroma < 8 for _, chroma in shades), name  # greys
            continue
        assert all(chroma > 25 for _, chroma in shades), name  # clearly coloured, never greyish
        hues[name] = [h for h, _ in shades]
        assert max(gap(h, k) for h in hues[name] for k in hues[name]) <= 80, f"{name}: hues {hues[name]} spread"
    for (a, these), (b, those) in itertools.combinations(hues.items(), 2):
        closest = min(gap(h, k) for h in these for k in those)
        assert closest >= 25, f"families {a} and {b} come within {closest:.0f}° of hue"


def test_unknown_codes_stand_for_themselves() -> None:
    """A store written by a newer jwtriage may hold a code this one does not know."""
    assert causes.cause_label("future_cause") == "future_cause"
    assert causes.remediation("future_cause") == "" and causes.cause_colour("future_cause") is None
    assert causes.cause_rank("future_cause") == len(CAUSES) > causes.cause_rank("stale_jwks")


def test_models_re_exports_the_codes() -> None:
    from pipeline import models

    assert models.Cause is Cause and models.Attack is Attack and models.Confidence is causes.Confidence
    assert models.CAUSE_LABELS is causes.CAUSE_LABELS and models.KEY_TIMING_CAUSES is causes.KEY_TIMING_CAUSES


def test_the_report_and_the_dashboard_share_the_palette() -> None:
    pytest.importorskip("streamlit")
    from dashboards import ui
    from pipeline.report import model

    assert {c.value: colour for c, colour in causes.CAUSE_COLOURS.items()} == ui.CAUSE_COLORS
    assert ui.CAUSE_ORDER == causes.CAUSE_ORDER
    assert model.cause_code("stale_jwks").colour == causes.CAUSE_INFO[Cause.STALE_JWKS].colour


#: Where a cause code may be spelled out: the registry, the decision procedure that produces the codes,
#: the simulator's independent judge, the store's re-judging rule (an unknown_kid is judged again when
#: a snapshot arrives), and explain (its own room, re-pointed separately).
_SPELLED_OUT_IN = (
    "pipeline/causes.py",
    "pipeline/engine/",
    "pipeline/simulator/",
    "pipeline/io/store.py",
    "pipeline/commands/explain.py",
)
_CODES = "|".join(c.value for c in Cause)
_QUOTED_CODE = re.compile(rf"""["']({_CODES})["']""")
_SQL_CAUSE_LITERAL = re.compile(rf"""cause\s*(?:=|IN\s*\()\s*'({_CODES})'""", re.IGNORECASE)


def test_no_surface_types_a_cause_list() -> None:
    """Cause lists, palettes and SQL cause conditions come from `pipeline.causes`, never typed again.

    A line naming two or more codes in quotes is a list typed by hand; SQL compares `cause`
    with a parameter, never with a literal.
    """
    offenders = []
    for path in sorted([*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("dashboards/**/*.py")]):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(_SPELLED_OUT_IN):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if len(set(_QUOTED_CODE.findall(line))) >= 2 or _SQL_CAUSE_LITERAL.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)

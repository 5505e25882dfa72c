"""PyJWT runner: PyJWKClient fetches the harness's JWKS, jwt.decode judges each token.

Protocol (every runner speaks it; see validators/README.md): argv is JWKS_URL ISSUER AUDIENCE
ALGS (comma-separated); the first stdout line announces the library and its version; then one
JSON request per stdin line ({"case", "token"}) gets one JSON reply per stdout line.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any

import jwt


def verify(client: jwt.PyJWKClient, token: str, issuer: str, audience: str, algorithms: list[str]) -> None:
    signing_key = client.get_signing_key_from_jwt(token)
    jwt.decode(
        token,
        signing_key.key,
        algorithms=algorithms,
        audience=audience,
        issuer=issuer,
        leeway=0,
        options={"require": ["exp"]},
    )


def judge(client: jwt.PyJWKClient, request: dict[str, Any], *config: Any) -> dict[str, Any]:
    try:
        verify(client, request["token"], *config)
    except Exception as error:  # whatever the library raises is what a service would log
        name = type(error).__name__
        return {"case": request["case"], "accepted": False, "error_class": f"{type(error).__module__}.{name}",
                "message": str(error), "logged": f"{name}: {error}"}
    return {"case": request["case"], "accepted": True}


def main() -> None:
    url, issuer, audience, algs = sys.argv[1:5]
    # lifespan: the cached key set expires after 1 s, so the rotation's retired key drops out quickly;
    # cooldown 0 (where this PyJWT has the option): a kid miss refetches at once, as every runner here is configured to
    # (the default 30 s cooldown would reject the rotation's new key: see README).
    options: dict[str, Any] = {"cache_jwk_set": True, "lifespan": 1}
    if "cooldown_duration" in inspect.signature(jwt.PyJWKClient).parameters:
        options["cooldown_duration"] = 0
    client = jwt.PyJWKClient(url, **options)
    print(json.dumps({"ready": True, "library": "pyjwt", "version": jwt.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip():
            reply = judge(client, json.loads(line), issuer, audience, algs.split(","))
            print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()

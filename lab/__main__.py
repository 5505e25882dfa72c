"""`python -m lab`: Keycloak rotates its keys under real services; jwtriage is judged against what happened.

Starts Keycloak (unpacked by scripts/lab-up.sh under .lab/), the four services and
`jwtriage jwks-watch`, runs the traffic through a rotation, then ships the services' lines to
Kafka, runs `jwtriage consume`, and compares. Everything it started is stopped in every case;
this run's topics and sampled tokens are deleted. Exit 0 at >= 99 % agreement with every query
check ok, 1 below or on a query MISMATCH (the dashboard's counts are not the stored verdicts'), 2
when the lab itself failed.
"""

from __future__ import annotations

import argparse
import sys
import time

from lab.run import Lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("--keycloak-url", help="use this running Keycloak (admin/admin) instead of starting one")
    parser.add_argument("--keep", action="store_true", help="keep .lab/run/ (sampled tokens are still deleted)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    lab = Lab(keycloak_url=args.keycloak_url, keep=args.keep)
    try:
        pct = lab.run()
    except Exception as exc:  # the lab's own failure: one line, everything stopped
        print(f"lab: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        lab.stop()
        print(f"lab: took {time.monotonic() - started:.0f} s", file=sys.stderr)
    if lab.mismatches:
        print(f"lab: {lab.mismatches} query check(s) MISMATCH: the report/dashboard disagree with the stored verdicts",
              file=sys.stderr)
    return 0 if pct >= 99.0 and not lab.mismatches else 1


if __name__ == "__main__":
    sys.exit(main())

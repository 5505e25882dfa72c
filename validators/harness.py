"""Real validators as the judge: run real JWT libraries over a failing-token corpus and score jwtriage.

    python -m validators.harness [--only pyjwt,jose] [--out validators/out] [--fixture PATH]

Steps: build the corpus (`corpus`), serve its JWKS on 127.0.0.1 (`jwks_server`), start every
library's runner (`runners`), walk the cases phase by phase in lock-step (publish, then for
each case send the token to every runner and collect each reply), then run jwtriage's own
`classify` over the replies and tokens (`judge`) and print the agreement table (`report`).

Exit 0 when every runner answered every case (disagreements are findings, not failures),
1 when a runner crashed, 2 when jwtriage's classify failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from validators import judge, report
from validators.corpus import ALGORITHMS, Case, CorpusBuilder, Keys, Phase
from validators.jwks_server import JwksServer
from validators.runners import RunnerCrash, RunnerProcess, RunnerSpec, runner_specs

HERE = Path(__file__).resolve().parent
#: Longer than every runner's key-set cache (1 s): after k1 is removed, each library must refetch.
CACHE_EXPIRY_WAIT_SECONDS = 1.5


def start_runners(specs: list[RunnerSpec], server: JwksServer) -> list[RunnerProcess]:
    started: list[RunnerProcess] = []
    try:
        for spec in specs:
            args = [server.url(spec.name), judge.ISSUER, judge.AUDIENCE, ",".join(ALGORITHMS)]
            started.append(RunnerProcess(spec, args))
        for runner in started:
            runner.wait_ready()
    except BaseException:
        for runner in started:
            runner.close()
        raise
    return started


def run_case(case: Case, runners: list[RunnerProcess], server: JwksServer) -> list[judge.Observation]:
    """Send one token to every runner at once, then collect each reply with its time and last fetch."""
    for runner in runners:
        runner.send(case.name, case.token)
    observed = []
    for runner in runners:
        reply = runner.receive(case.name)
        ts = datetime.now(UTC)
        fetched = server.last_fetch(runner.spec.name, ts)
        observed.append(judge.Observation(runner.spec.name, case.name, case.token, ts, reply, fetched))
    return observed


def walk(
    cases: list[Case], keys: Keys, runners: list[RunnerProcess], server: JwksServer
) -> tuple[list[dict[str, Any]], list[judge.Observation]]:
    """Every phase in order: publish its key set (and snapshot it), then run its cases."""
    snapshots, observations = [], []
    for phase in Phase:
        jwks = keys.jwks(phase)
        server.publish(jwks)
        snapshots.append(judge.snapshot(datetime.now(UTC), jwks))
        if phase is Phase.RETIRED:
            time.sleep(CACHE_EXPIRY_WAIT_SECONDS)
        for case in (case for case in cases if case.phase is phase):
            observations.extend(run_case(case, runners, server))
    return snapshots, observations


def collect(specs: list[RunnerSpec]) -> tuple[list[Case], list[dict[str, Any]], list[judge.Observation], dict]:
    keys = Keys.generate()
    cases = CorpusBuilder(keys, judge.ISSUER, judge.AUDIENCE, int(time.time())).build()
    with JwksServer() as server:
        runners = start_runners(specs, server)
        try:
            snapshots, observations = walk(cases, keys, runners, server)
        finally:
            for runner in runners:
                runner.close()
        libraries = {
            runner.spec.name: {
                "library": runner.ready.get("library", runner.spec.name),
                "version": runner.ready.get("version"),
                "helpers": runner.ready.get("helpers", {}),
                "jwks_fetches": server.fetch_count(runner.spec.name),
            }
            for runner in runners
        }
    return cases, snapshots, observations, libraries


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="validators.harness", description=__doc__.splitlines()[0])
    names = [spec.name for spec in runner_specs()]
    parser.add_argument("--only", help=f"comma-separated runners (default: all of {','.join(names)})")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="where messages.json and the inputs go")
    parser.add_argument("--fixture", type=Path, help="also write the curated message fixture here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    specs = runner_specs()
    if args.only:
        wanted = set(args.only.split(","))
        specs = [spec for spec in specs if spec.name in wanted]
    try:
        cases, snapshots, observations, libraries = collect(specs)
    except RunnerCrash as crash:
        print(f"validators: runner crashed: {crash}", file=sys.stderr)
        return 1
    try:
        verdicts = judge.classify(args.out, ALGORITHMS, snapshots, observations)
    except RuntimeError as error:
        print(f"validators: {error}", file=sys.stderr)
        return 2
    rows = report.rows(observations, {case.name: case.intent for case in cases}, verdicts)
    report.write_json(args.out / "messages.json", report.raw_messages(rows, libraries))
    if args.fixture:
        report.write_json(args.fixture, report.fixture(rows, libraries))
    versions = ", ".join(f"{info['library']} {info['version']}" for info in libraries.values())
    print(f"Real validators: {len(cases)} cases x {len(specs)} libraries ({versions})\n")
    print(report.agreement_table(rows, [spec.name for spec in specs]))
    print(report.details(rows))
    print(report.intent_gaps(rows))
    print(f"\nwrote {args.out / 'messages.json'}; {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

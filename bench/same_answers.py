"""Same answers: digests of the report and of the questions a change rewrites, to compare two checkouts on one store.

    python bench/same_answers.py build STORE [--events 60000] [--hours 72] [--seed 7]
    PYTHONPATH=<checkout> python bench/same_answers.py digest STORE

`build` runs a simulated scenario through the consumer's path (the runner, a `Store` with an
instance name: Parquet parts, hourly rollups rolled by the writer's maintenance pass, nothing
expired) into STORE, so its rollups and raw rows agree. `digest` prints the md5 of each answer:
the weekly report's markdown for every week of the store, key hygiene's rows per week, and the
questions that read the raw tail with a window ending inside an hour (attacks, attack clients:
`rolled.hits`) and `services_seen`. Run it with each checkout's code (PYTHONPATH picks the checkout: the
script adds no path of its own) and compare the lines.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pipeline import queries
from pipeline.io.store_readers import connect_readonly
from pipeline.report.build import build_report
from pipeline.report.markdown import render_markdown
from pipeline.report.model import parse_week, week_name


def build(store: Path, events: int, hours: float, seed: int) -> None:
    from pipeline.commands.demo import scenario_config, scenario_envelopes
    from pipeline.io.memory import ListSource
    from pipeline.io.store import Store
    from pipeline.runner import Pipeline, run
    from pipeline.simulator import simulate

    scenario = simulate(seed=seed, events=events, hours=hours)
    config = scenario_config(scenario, store)
    with Store(store, instance="same") as writer:
        run(ListSource(scenario_envelopes(scenario), batch_size=2_000), Pipeline(config), writer)
        writer.publish()
        assert writer.publisher is not None
        writer.publisher.maintain()  # rolls every closed hour, and the open ones into the open rollup
    print(f"{store}: {len(scenario.events):,} events over {hours:g} h")


def digest(value: Any) -> str:
    return hashlib.md5(repr(value).encode()).hexdigest()


def digests(store: Path) -> None:
    con = connect_readonly(store)
    try:
        first, last = queries.time_range(con)
        assert first is not None and last is not None, "an empty store"
        weeks = sorted({week_name(first + timedelta(days=d)) for d in range((last - first).days + 1)} | {
            week_name(last)})
        for week in weeks:
            since, until = parse_week(week)
            report = build_report(con, week, store="<store>", now=last)
            print(f"report {week}: {digest(render_markdown(report))}")
            print(f"key_hygiene {week}: {digest(queries.key_hygiene(con, since, until))}")
        inside = last - timedelta(minutes=7)  # a window ending inside an hour: the raw tail, not its rollup
        for length in (timedelta(hours=1), timedelta(hours=6), timedelta(days=2)):
            window = queries.Filters(since=inside - length, until=inside)
            print(f"attacks to {inside:%H:%M}, {length}: {digest(queries.attacks(con, window))}")
            print(f"attack_client_ids to {inside:%H:%M}, {length}: "
                  f"{digest(queries.attack_client_ids(con, window, 10))}")
        print(f"services_seen: {digest(queries.services_seen(con))}")
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    building = commands.add_parser("build", help="simulate a scenario into a consumer's store")
    building.add_argument("store", type=Path)
    building.add_argument("--events", type=int, default=60_000)
    building.add_argument("--hours", type=float, default=72.0)
    building.add_argument("--seed", type=int, default=7)
    digesting = commands.add_parser("digest", help="md5 of each answer, with this checkout's code")
    digesting.add_argument("store", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        build(args.store, args.events, args.hours, args.seed)
    else:
        digests(args.store)


if __name__ == "__main__":
    main()

"""`jwtriage simulate`: write the simulated key-rotation scenario as JSONL, and optionally produce it to Kafka."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import IO, Any

from pipeline.commands.common import EXIT_OK, scenario_flags
from pipeline.config import load_config


def cmd_simulate(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.simulator import simulate, write_scenario

    scenario = simulate(seed=args.seed, events=args.events, hours=args.hours, unique_tokens=args.unique_tokens)
    written = write_scenario(scenario, Path(args.out))
    for name, path in written.items():
        print(f"wrote {path} ({name})", file=stdout)
    if args.kafka:
        from pipeline.io.kafka import produce, scenario_records

        kafka = load_config(written["config"], os.environ).kafka  # the scenario's services, your [kafka] env
        sent = produce(kafka, scenario_records(scenario, kafka))
        print(
            f"produced {sent:,} records to {kafka.bootstrap_servers} ({kafka.failures_topic}, "
            f"{kafka.samples_topic}, {kafka.jwks_topic})",
            file=stdout,
        )
        print(f"next: jwtriage consume --config {written['config']} --exit-when-idle 10", file=stdout)
        return EXIT_OK
    print(
        f"next: jwtriage classify --config {written['config']} --jwks {written['jwks']} "
        f"--samples {written['samples']} {written['events']}",
        file=stdout,
    )
    return EXIT_OK


def register(commands: Any) -> None:
    sim = commands.add_parser(
        "simulate",
        help="write a simulated scenario (config, JWKS snapshots, samples, events, ground truth) as JSONL",
        description="Write a deterministic key-rotation scenario: jwtriage.toml, jwks.jsonl, samples.jsonl, "
        "events.jsonl and truth.jsonl (the true cause of each event, kept apart from the events).",
    )
    sim.add_argument("--out", default="scenario", help="directory to write (default: ./scenario)")
    sim.add_argument(
        "--kafka",
        action="store_true",
        help="also produce the scenario to Kafka (bootstrap servers from JWTRIAGE_KAFKA__BOOTSTRAP_SERVERS, "
        "default 127.0.0.1:9092); consume it with the written jwtriage.toml",
    )
    sim.add_argument("--unique-tokens", action="store_true", help="a freshly signed token for every event")
    scenario_flags(sim)
    sim.set_defaults(handler=cmd_simulate)

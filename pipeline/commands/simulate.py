"""`jwtriage simulate`: write the simulated key-rotation scenario as JSONL, and optionally produce it to Kafka."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pipeline.commands.common import EXIT_OK, scenario_flags
from pipeline.config import KafkaConfig, load_config
from pipeline.simulator.output import with_tables

#: The consumer group `simulate --kafka` writes into the scenario's config (unless JWTRIAGE_KAFKA__GROUP_ID is set).
SIMULATED_GROUP = "jwtriage-simulated"


def cmd_simulate(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    from pipeline.simulator import simulate, write_scenario

    scenario = simulate(seed=args.seed, events=args.events, hours=args.hours, unique_tokens=args.unique_tokens)
    written = write_scenario(scenario, Path(args.out))
    for name, path in written.items():
        print(f"wrote {path} ({name})", file=stdout)
    if args.kafka:
        from pipeline.io.kafka import produce, scenario_records

        kafka = load_config(written["config"], os.environ).kafka  # the scenario's services, your [kafka] env
        with _quiet_client(getattr(args, "verbose", False)):
            sent = produce(kafka, scenario_records(scenario, kafka))
        # the broker and the three topics (never a credential: those stay in the environment)
        used = {k: v for k, v in kafka.model_dump().items() if k.endswith(("_servers", "_topic")) and v}
        # its own consumer group, unless you chose one: a consumer of the scenario must not join (and rebalance)
        # a real deployment's default group on a shared broker
        used["group_id"] = SIMULATED_GROUP if kafka.group_id == KafkaConfig().group_id else kafka.group_id
        # the broker and topics it produced to, so `consume --config` reads exactly those
        written["config"].write_text(with_tables(scenario.config_toml, kafka=used), encoding="utf-8")
        print(
            f"produced {sent:,} records to {kafka.bootstrap_servers} ({kafka.failures_topic}, "
            f"{kafka.samples_topic}, {kafka.jwks_topic})",
            file=stdout,
        )
        key = written["config"].parent / "hash.key"
        make_key = not key.exists()  # `keygen` refuses to overwrite: on a second run the key is already there
        if make_key:
            print(f"next: jwtriage keygen --out {key}   (the store's key for personal claims, once)", file=stdout)
        print(
            f"{'     ' if make_key else 'next:'} JWTRIAGE_STORE__HASH_KEY_FILE={key} "
            f"jwtriage consume --config {written['config']} --exit-when-idle 10",
            file=stdout,
        )
        return EXIT_OK
    print(
        f"next: jwtriage classify --config {written['config']} --jwks {written['jwks']} "
        f"--samples {written['samples']} {written['events']}",
        file=stdout,
    )
    return EXIT_OK


@contextmanager
def _quiet_client(verbose: bool) -> Iterator[None]:
    """kafka-python logs a normal run at INFO and a topic it is about to create at ERROR ("Topic … not found"):
    silent unless -v. A real failure still reaches the person, as the exception `produce` raises."""
    client = logging.getLogger("kafka")
    before = client.level
    if not verbose:
        client.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client.setLevel(before)


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
        "default 127.0.0.1:9092) and write that broker and the topics into the jwtriage.toml; consume it with "
        "that config. Quiet unless -v (jwtriage -v simulate --kafka) for the Kafka client's logs",
    )
    sim.add_argument("--unique-tokens", action="store_true", help="a freshly signed token for every event")
    scenario_flags(sim)
    sim.set_defaults(handler=cmd_simulate)

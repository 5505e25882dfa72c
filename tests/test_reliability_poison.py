"""Poison input through the real consumer: over 10,000 bad messages among the good ones, and hostile tokens.

Fault: bad bytes on all three topics, interleaved at random with a simulated scenario:
invalid UTF-8, not JSON, JSON bombs (huge numbers, wide objects, long arrays), nesting far
past Python's recursion limit, two 10 MB values and a few just over the 1 MiB record
limit, wrong types, missing fields, times without a UTC offset, unknown services, bad
samples and snapshots, plus hypothesis-drawn bytes and JSON (tests/reliability/poison.py).
Beside them, valid events whose tokens are hostile (5 and 10,000 segments, a huge `kid`, a
non-string `alg`, a time claim that is a string, nesting in the header, lone surrogates),
inline and through the samples topic.

What must hold (DESIGN.md, "Rules that hold everywhere"): nothing crashes (the consumer
exits 0); each bad record is exactly one dead letter at its offset with a reason of its
family; each hostile-token record is a row with its contract cause and never a dead
letter; a valid event of exactly the size limit is a row; every good event is stored
exactly once; the consumer's summary and its dead-letter topic count every dead letter.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.kafka_run import KafkaRun, produce_tracked, read_topic
from tests.reliability.poison import Bad, Hostile, PoisonFactory, matches
from tests.reliability.scenarios import Expected, assert_exactly_once, scenario, tagged_records

pytestmark = pytest.mark.kafka

SEED = 21


@pytest.fixture
def run(tmp_path: Path) -> Iterator[KafkaRun]:
    kafka_run = KafkaRun.create(tmp_path / "run", scenario(3_000, SEED).config_toml)
    kafka_run.env["JWTRIAGE_KAFKA__DEAD_LETTER_TOPIC"] = kafka_run.kafka.failures_topic + ".dlq"
    try:
        yield kafka_run
    finally:
        kafka_run.close()


def _segment(text: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))


def a_real_token() -> tuple[dict[str, Any], dict[str, Any], str]:
    """Header, claims and service of a valid inline token of the scenario (the base for the hostile ones)."""
    sc = scenario(3_000, SEED)
    for record, truth in zip(sc.events, sc.truth, strict=True):
        if truth["cause"] == "valid" and truth["confidence"] == "verified" and b'"token":' in record.value:
            event = json.loads(record.value)
            header, claims, _ = event["token"].split(".")
            return _segment(header), _segment(claims), event["service"]
    raise AssertionError("the scenario has no valid inline token")


def test_ten_thousand_poison_messages_are_dead_letters_and_hostile_tokens_get_their_cause(run: KafkaRun) -> None:
    started = time.monotonic()
    sc = scenario(3_000, SEED)
    services = [s["name"] for s in tomllib.loads(sc.config_toml)["services"]]
    factory = PoisonFactory(services, ts="2026-11-23T06:00:00Z")
    bad = factory.bad_records()
    header, claims, service = a_real_token()
    hostile = factory.hostile(header, claims, service)
    limit_event, limit_value = factory.at_the_limit()
    assert len(bad) >= 10_000 and sum(len(b.value) >= 10 * 1024 * 1024 for b in bad) >= 2

    # The scenario in production order, each poison record at a random place in it; the samples
    # of the hostile tokens first (the join works the other way round too; that is not this test).
    topic = {"event": run.kafka.failures_topic, "sample": run.kafka.samples_topic, "snapshot": run.kafka.jwks_topic}
    records: list[tuple[str, str | None, bytes, Bad | Hostile | None]] = [
        (r.topic, r.key, r.value, None) for r in tagged_records(sc, run.kafka)
    ]
    rng = random.Random(SEED)
    poison: list[tuple[str, str | None, bytes, Bad | Hostile | None]] = [
        (topic[b.kind], "poison", b.value, b) for b in bad
    ] + [(topic["event"], "poison", json.dumps(h.event).encode(), h) for h in hostile]
    for entry in poison:
        records.insert(rng.randrange(len(records) + 1), entry)
    records[:0] = [(topic["sample"], None, json.dumps({"token": h.sample}).encode(), None)
                   for h in hostile if h.sample is not None]
    records.append((topic["event"], "poison", limit_value, None))
    built = time.monotonic()
    placed = produce_tracked(run.kafka, ((t, k, v) for t, k, v, _ in records))
    produced = time.monotonic()
    where = {id(item): at for (_, _, _, item), at in zip(records, placed, strict=True) if item is not None}

    consumer = run.consumer("--batch-size", "500", "--exit-when-idle", "3")
    status = consumer.wait(timeout=420)
    assert status == 0, f"the consumer crashed (exit {status}):\n{consumer.output()[-4000:]}"
    print(f"\n{len(bad):,} bad records, {len(hostile)} hostile tokens among {len(records):,} records: built in "
          f"{built - started:.0f} s, produced in {produced - built:.0f} s, "
          f"consumed in {time.monotonic() - produced:.0f} s")

    letters = {(s, p, o): (kind, reason) for s, p, o, kind, reason in run.query(
        "SELECT source, source_partition, source_offset, kind, reason FROM dead_letters")}
    rows = {event_id: (cause, confidence) for event_id, cause, confidence in run.query(
        "SELECT event_id, cause, confidence FROM classifications")}

    # Every bad record: one dead letter, at its offset, with the reason of its family.
    wrong: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for b in bad:
        letter = letters.get(where[id(b)])
        if letter is None or letter[0] != b.kind or not matches(b.reason, letter[1]):
            wrong[b.family] += 1
            examples.setdefault(b.family, f"{b.value[:60]!r}: expected /{b.reason}/, got {letter}")
    assert not wrong, f"bad records without their dead letter: {dict(wrong)}; e.g. {examples}"

    # Every hostile token: a row with its contract cause, never a dead letter.
    lettered = [letters[where[id(h)]] for h in hostile if where[id(h)] in letters]
    assert not lettered, f"{len(lettered)} valid events with hostile tokens became dead letters: {lettered[:5]}"
    mismatched = Counter(
        f"{h.family}: {rows.get(h.event['event_id'])} instead of {(h.cause, h.confidence)}"
        for h in hostile if rows.get(h.event["event_id"]) != (h.cause, h.confidence)
    )
    assert not mismatched, f"hostile tokens without their contract cause: {dict(mismatched)}"
    assert limit_event["event_id"] in rows, "a valid event of exactly the size limit was not stored"

    # The good records, each once; the dead letters are the poison plus the scenario's own bad lines.
    truth = Expected.of(sc)
    expected = Expected(
        {**truth.causes, **{h.event["event_id"]: h.cause for h in hostile}, limit_event["event_id"]: "expired"},
        truth.dead_letters + len(bad),
    )
    assert_exactly_once(run, expected)
    # The consumer's own count and its dead-letter topic agree with the store (start-up key read included).
    counts = re.search(r"([\d,]+) events, ([\d,]+) dead letters", consumer.output())
    assert counts is not None and int(counts.group(2).replace(",", "")) == len(letters), consumer.output()[-500:]
    sent = Counter(json.loads(v)["kind"] for v in read_topic(run.kafka, run.env["JWTRIAGE_KAFKA__DEAD_LETTER_TOPIC"]))
    assert sent == Counter(kind for kind, _ in letters.values())


def test_nesting_in_every_field_and_huge_tokens_never_stop_the_consumer(run: KafkaRun) -> None:
    """Issue 17: a token nested 254-1023 deep crashed the consumer on that record at every restart.

    Every depth from 65 to 20,000 in the header, payload, claims, kid, event fields, samples
    and snapshots, 1 MB tokens and samples, headers of 10k and 100k keys
    (tests/reliability/poison.py `nested`), interleaved with the scenario: the consumer
    exits 0, every good event is stored once, each poison record is a row with its
    contract cause or one dead letter with the reason of its family.
    """
    sc = scenario(3_000, SEED)
    services = [s["name"] for s in tomllib.loads(sc.config_toml)["services"]]
    header, claims, service = a_real_token()
    bad, hostile = PoisonFactory(services, ts="2026-11-23T06:00:00Z").nested(header, claims, service)
    topic = {"event": run.kafka.failures_topic, "sample": run.kafka.samples_topic, "snapshot": run.kafka.jwks_topic}
    records: list[tuple[str, str | None, bytes, Bad | Hostile | None]] = [
        (r.topic, r.key, r.value, None) for r in tagged_records(sc, run.kafka)
    ]
    rng = random.Random(SEED)
    for entry in [(topic[b.kind], "poison", b.value, b) for b in bad] + [
        (topic["event"], "poison", json.dumps(h.event).encode(), h) for h in hostile
    ]:
        records.insert(rng.randrange(len(records) + 1), entry)
    records[:0] = [(topic["sample"], None, json.dumps({"token": h.sample}).encode(), None)
                   for h in hostile if h.sample is not None]
    placed = produce_tracked(run.kafka, ((t, k, v) for t, k, v, _ in records))
    where = {id(item): at for (_, _, _, item), at in zip(records, placed, strict=True) if item is not None}

    consumer = run.consumer("--batch-size", "200", "--exit-when-idle", "3")
    status = consumer.wait(timeout=300)
    assert status == 0, f"the consumer crashed (exit {status}):\n{consumer.output()[-4000:]}"
    assert "internal error" not in consumer.output()

    letters = {(s, p, o): (kind, reason) for s, p, o, kind, reason in run.query(
        "SELECT source, source_partition, source_offset, kind, reason FROM dead_letters")}
    rows = {event_id: cause for event_id, cause in run.query("SELECT event_id, cause FROM classifications")}
    wrong = {b.family: letters.get(where[id(b)]) for b in bad
             if not (letters.get(where[id(b)]) and matches(b.reason, letters[where[id(b)]][1]))}
    assert not wrong, f"poison records without their dead letter: {wrong}"
    mismatched = {h.family: rows.get(h.event["event_id"]) for h in hostile if rows.get(h.event["event_id"]) != h.cause}
    assert not mismatched, f"hostile tokens without their contract cause: {mismatched}"
    truth = Expected.of(sc)
    expected = Expected({**truth.causes, **{h.event["event_id"]: h.cause for h in hostile}},
                        truth.dead_letters + len(bad))
    assert_exactly_once(run, expected)

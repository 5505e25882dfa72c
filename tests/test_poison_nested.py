"""No input stops the stream: nesting in the band one reader accepts and a writer refuses, huge tokens.

Fault (issue 17): a token whose header or payload nests 254-1023 levels (a 1.5 KB event)
parsed, then `orjson.dumps` raised storing it; `classify` died with no output at all and
`consume` crashed on that record at every restart. Here every depth from 65 to 20,000, in
the header, the payload, a claim (`sub`, hashed; `aud`), the kid, an event's field, a
sample's and a snapshot's, inline and through the samples file; 1 MB tokens and samples;
headers of 10,000 and 100,000 keys (tests/reliability/poison.py `nested`), interleaved with
a simulated day, through `jwtriage classify` in a subprocess.

What must hold: the process exits 1 (bad input), never dies; every good event is a row
exactly once with its true cause; every hostile token's event is a row with its contract
cause; every bad record is exactly one error line naming its file and line, with the reason
of its family. The same through the real broker: tests/test_reliability_poison.py.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

from pipeline.engine.tokens import MalformedToken, parse
from pipeline.limits import MAX_JSON_DEPTH, nesting_exceeds
from pipeline.models import AuthFailureEvent
from pipeline.records import RecordError, decode_record
from tests.reliability.kafka_run import ROOT
from tests.reliability.poison import PoisonFactory, matches, raw_token
from tests.reliability.scenarios import scenario
from tests.test_reliability_poison import a_real_token

SEED = 21


def test_nesting_is_measured_on_the_bytes_ignoring_brackets_in_strings() -> None:
    assert not nesting_exceeds(b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * MAX_JSON_DEPTH)
    assert nesting_exceeds(b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1))
    assert not nesting_exceeds(json.dumps({"a": "[" * 5_000 + '\\"{' * 100}).encode())  # brackets in a string
    assert not nesting_exceeds(b"[]" * 10_000)  # wide, not deep
    assert not nesting_exceeds(b"[" * 10_000)  # unbalanced: the decoder's to refuse
    assert nesting_exceeds(b"[" * 10_000 + b"]" * 10_000)


def test_every_depth_is_malformed_or_a_dead_letter_never_an_exception() -> None:
    header, payload = '{"alg":"RS256","kid":"k"}', '{"sub":"a"}'
    for depth in (MAX_JSON_DEPTH + 1, 254, 300, 1023, 1024, 5_000):
        inner = "[" * (depth - 1) + "]" * (depth - 1)
        for token in (raw_token(header[:-1] + f',"x":{inner}}}', payload),
                      raw_token(header, payload[:-1] + f',"x":{inner}}}')):
            try:
                parse(token)
            except MalformedToken as exc:
                assert "nested deeper than 64 levels" in exc.reason
            else:
                raise AssertionError(f"depth {depth} parsed")
        record = b'{"event_id":"e","ts":"2026-01-01T00:00:00Z","service":"s","x":' + inner.encode() + b"}"
        try:
            decode_record(record, AuthFailureEvent)
        except RecordError as exc:
            assert str(exc).startswith("not JSON: nested deeper than 64 levels")
        else:
            raise AssertionError(f"a record of depth {depth} decoded")
    parse(raw_token(header, '{"x":' + "[" * 63 + "]" * 63 + "}"))  # at the limit: a token like any other


def test_classify_survives_every_poison_shape_and_stores_each_good_event_once(tmp_path: Path) -> None:
    sc = scenario(3_000, SEED)
    services = [s["name"] for s in tomllib.loads(sc.config_toml)["services"]]
    factory = PoisonFactory(services, ts="2026-11-23T06:00:00Z")
    valid_header, claims, service = a_real_token()
    bad, hostile = factory.nested(valid_header, claims, service)
    rng = random.Random(SEED)
    files: dict[str, list[tuple[bytes, object]]] = {
        "event": [(r.value, None) for r in sc.events],
        "sample": [(r.value, None) for r in sc.samples],
        "snapshot": [(r.value, None) for r in sc.snapshots],
    }
    files["sample"][:0] = [(json.dumps({"token": h.sample}).encode(), None) for h in hostile if h.sample]
    for item in [*bad, *hostile]:
        kind = item.kind if hasattr(item, "kind") else "event"
        value = item.value if hasattr(item, "value") else json.dumps(item.event).encode()  # type: ignore[union-attr]
        lines = files[kind]
        lines.insert(rng.randrange(1 if kind == "snapshot" else 0, len(lines) + 1), (value, item))
    paths = {kind: tmp_path / f"{kind}s.jsonl" for kind in files}
    for kind, lines in files.items():
        paths[kind].write_bytes(b"".join(value + b"\n" for value, _ in lines))
    (tmp_path / "jwtriage.toml").write_text(sc.config_toml)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "classify", "--config", str(tmp_path / "jwtriage.toml"),
         "--jwks", str(paths["snapshot"]), "--samples", str(paths["sample"]), str(paths["event"])],
        capture_output=True, cwd=ROOT, timeout=300, check=False,
    )
    err = result.stderr.decode()
    assert result.returncode == 1, f"exit {result.returncode}:\n{err[-3000:]}"
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    stored = Counter(row["event_id"] for row in rows)
    cause = {row["event_id"]: row["cause"] for row in rows}

    truth = {t["event_id"]: t["cause"] for t in sc.truth if not t.get("dead_letter")}
    assert all(stored[event_id] == 1 for event_id in truth), "a good event is missing or stored twice"
    agree = sum(cause[event_id] == expected for event_id, expected in truth.items())
    assert agree == len(truth), f"{len(truth) - agree} good events changed cause beside the poison"
    wrong = {h.family: cause.get(h.event["event_id"]) for h in hostile if cause.get(h.event["event_id"]) != h.cause}
    assert not wrong, f"hostile tokens without their contract cause: {wrong}"
    assert all(stored[h.event["event_id"]] == 1 for h in hostile)

    errors: dict[tuple[str, int], str] = {}
    for line in err.splitlines():
        if line.startswith("jwtriage: "):
            where, _, reason = line[len("jwtriage: "):].partition(": ")
            name, _, number = where.rpartition(":")
            errors[(name, int(number))] = reason
    for kind, lines in files.items():
        for number, (_, item) in enumerate(lines, start=1):
            if item in bad:
                reason = errors.get((str(paths[kind]), number))
                assert reason is not None and matches(item.reason, reason), (item.family, reason)  # type: ignore[union-attr]
    assert "Traceback" not in err and "internal error" not in err


def test_a_bug_met_by_one_record_is_its_dead_letter_and_the_rest_of_the_batch_is_judged(caplog: object) -> None:
    """Whatever a record makes the judging code raise, it is that record's dead letter, never the stream's end."""
    from pipeline.engine.keys import KeyTimeline
    from pipeline.records import Envelope, Position, RecordKind
    from pipeline.runner import Pipeline
    from tests.world import T0, config, default_snapshots, mint

    pipeline = Pipeline(config(), KeyTimeline(default_snapshots()))
    poison = mint("rsa-2", headers={"x": "boom"})
    judge = pipeline.classifier.classify

    def classify(event: AuthFailureEvent, token: str | None, trace: object = None) -> object:
        if token == poison:
            raise TypeError(f"Recursion limit reached in {token}")  # a message that quotes the token
        return judge(event, token)

    pipeline.classifier.classify = classify  # type: ignore[method-assign,assignment]
    good = mint("rsa-2")

    def envelope(n: int, token: str) -> Envelope:
        doc = {"event_id": f"e{n}", "ts": T0.isoformat(), "service": "payments-api", "token": token}
        return Envelope(RecordKind.EVENT, json.dumps(doc).encode(), Position("f", 0, n))

    batch = pipeline.process([envelope(0, good), envelope(1, poison), envelope(2, good)])
    assert [j.event.event_id for j in batch.judged] == ["e0", "e2"]
    assert [d.position.offset for d in batch.dead_letters] == [1]
    assert re.fullmatch(r"internal error while judging this record \(TypeError at test_poison_nested\.py:\d+\): "
                        r"please report it", batch.dead_letters[0].reason)
    assert batch.positions == {("f", 0): 3}
    assert poison not in caplog.text and poison.split(".")[1] not in caplog.text  # type: ignore[attr-defined]

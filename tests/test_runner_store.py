"""The runner and the DuckDB store: joins in any order, dead letters, idempotent re-ingest, no tokens stored."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pydantic import SecretStr

from pipeline.engine.keys import KeyTimeline
from pipeline.engine.tokens import fingerprint
from pipeline.errors import StoreError
from pipeline.io.files import FileSource
from pipeline.io.memory import ListSource
from pipeline.io.store import Store
from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import DDL, SCHEMA_VERSION, create_statement, write_ddl
from pipeline.records import Batch, Envelope, Position, RecordKind
from pipeline.runner import Pipeline, PipelineLimits, run
from tests.world import CONTRACT_FIELDS, T0, World, default_snapshots, good_claims, mint

ROOT = Path(__file__).resolve().parent.parent


def _iso(at: Any) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def ev(event_id: str, **fields: Any) -> bytes:
    fields.setdefault("ts", _iso(T0))
    fields.setdefault("service", "payments-api")
    fields.setdefault("service_jwks_fetched_at", _iso(T0 - timedelta(minutes=5)))
    return json.dumps({"event_id": event_id, **fields}).encode()


class Feed:
    """Builds envelopes with increasing offsets per stream."""

    def __init__(self) -> None:
        self.offsets: dict[RecordKind, int] = {}

    def __call__(self, kind: RecordKind, value: bytes) -> Envelope:
        offset = self.offsets.get(kind, 0)
        self.offsets[kind] = offset + 1
        return Envelope(kind, value, Position(f"topic.{kind.value}", 0, offset))


def snapshot_envelopes(feed: Feed) -> list[Envelope]:
    return [feed(RecordKind.SNAPSHOT, s.model_dump_json().encode()) for s in default_snapshots()]


def rows(
    path: Path, sql: str = "SELECT event_id, cause, confidence FROM classifications ORDER BY event_id"
) -> list[Any]:
    con = connect_readonly(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_events_are_stored_with_the_contract_columns(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    envelopes = [*snapshot_envelopes(feed), feed(RecordKind.EVENT, ev("a", token=mint("rsa-1")))]
    cfg = World().cfg
    keyed = cfg.model_copy(update={"store": cfg.store.model_copy(update={"hash_key": SecretStr("k" * 32)})})
    with Store(db) as store:
        run(ListSource(envelopes), Pipeline(keyed), store)
    con = connect_readonly(db)
    row = con.execute("SELECT * FROM classifications").fetchone()
    names = [d[0] for d in con.description]
    con.close()
    stored = dict(zip(names, row, strict=True))
    for column in (*CONTRACT_FIELDS, "ts", "service"):
        assert column in stored
    assert stored["cause"] == "retired_key" and stored["attacks"] == [] and stored["findings"] == ["retired_key"]
    assert stored["ts"] == T0 and stored["service"] == "payments-api"
    assert json.loads(stored["token_claims"])["sub"].startswith("hmac:")  # keyed: see tests/test_identifiers.py


def test_late_sample_rejudges_the_event(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    token = mint("rsa-2", claims=good_claims(aud="api://orders"))
    pipeline = Pipeline(World().cfg)
    with Store(db) as store:
        run(
            ListSource([*snapshot_envelopes(feed), feed(RecordKind.EVENT, ev("a", token_sha256=fingerprint(token)))]),
            pipeline,
            store,
        )
        first = store.con.execute("SELECT cause, confidence FROM classifications").fetchall()
        run(ListSource([feed(RecordKind.SAMPLE, json.dumps({"token": token}).encode())]), pipeline, store)
        second = store.con.execute("SELECT cause, confidence FROM classifications").fetchall()
    assert first == [("unverifiable", "reported")]
    assert second == [("audience_mismatch", "verified")]
    assert pipeline.counts["rejudged"] == 1


def test_a_removal_snapshot_that_comes_after_its_events_rejudges_them() -> None:
    """Topics arrive in no fixed order: an event can overtake the snapshot that retired its key."""
    feed = Feed()
    snapshots = snapshot_envelopes(feed)
    pipeline = Pipeline(World().cfg)
    early = pipeline.process(
        [
            *snapshots[:2],  # rsa-1 still published at T0 - 2 h
            feed(RecordKind.EVENT, ev("after", token=mint("rsa-1"))),  # at T0: after rsa-1's removal at T0 - 30 min
            feed(
                RecordKind.EVENT,
                ev(
                    "before",
                    ts=_iso(T0 - timedelta(hours=1)),
                    token=mint("rsa-1", claims=good_claims(at=T0 - timedelta(hours=1))),
                ),
            ),
        ]
    )
    assert {j.event.event_id: j.verdict.classification.cause.value for j in early.judged} == {
        "after": "valid",
        "before": "valid",
    }
    later = pipeline.process([snapshots[2]])  # the snapshot without rsa-1, dated T0 - 30 min
    assert [(j.event.event_id, j.verdict.classification.cause.value) for j in later.judged] == [
        ("after", "retired_key")
    ]  # the event before the removal is unchanged and not written again
    assert pipeline.process([snapshots[3]]).judged == []  # a snapshot that changes no verdict writes nothing


def test_a_source_with_snapshots_first_holds_no_judged_event(caplog: pytest.LogCaptureFixture) -> None:
    """`classify` (a `FileSource`) sends every snapshot before any event: nothing is held for a later one.

    The verdicts are those of a pipeline that holds them. Should a snapshot come after events
    all the same, the pipeline says so and holds events from then on.
    """
    feed = Feed()
    snapshots = snapshot_envelopes(feed)
    kids = ("rsa-1", "rsa-2", "rsa-nope")  # the last is no published kid: unknown_kid, held for a key
    events = [feed(RecordKind.EVENT, ev(f"e{n}", token=mint(kids[n % 3], signer="rsa-2"))) for n in range(6)]
    holding, first = Pipeline(World().cfg), Pipeline(World().cfg, snapshots_first=FileSource.snapshots_first)
    mine, theirs = first.process([*snapshots, *events]), holding.process([*snapshots, *events])
    verdicts = [[(j.event.event_id, j.verdict) for j in batch.judged] for batch in (mine, theirs)]
    assert verdicts[0] == verdicts[1]
    assert holding.state_sizes["recent_with_token"] == 4 and holding.state_sizes["awaiting_key"] == 2
    assert first.state_sizes["recent_with_token"] == first.state_sizes["awaiting_key"] == 0
    first.process([snapshots[0]])
    assert "after events" in caplog.text
    first.process([feed(RecordKind.EVENT, ev("late", token=mint("rsa-2")))])
    assert first.state_sizes["recent_with_token"] == 1


def test_events_waiting_for_a_sample_survive_a_restart(tmp_path: Path) -> None:
    """A new process on the same store takes back the events still waiting (the consumer's restart)."""
    feed, db = Feed(), tmp_path / "s.duckdb"
    waiting = mint("rsa-2", claims=good_claims(aud="api://orders"))
    inline_unknown = mint("rsa-2", claims=good_claims(jti="other"))
    with Store(db) as store:
        run(
            ListSource(
                [
                    *snapshot_envelopes(feed)[:1],  # rsa-2 is not published yet: the inline token is unknown_kid
                    feed(RecordKind.EVENT, ev("waits", token_sha256=fingerprint(waiting), client_id="c1")),
                    feed(RecordKind.EVENT, ev("inline", token=inline_unknown)),
                    feed(RecordKind.EVENT, ev("no-hash", reported_error="IDX10223: Lifetime validation failed")),
                ]
            ),
            Pipeline(World().cfg),
            store,
        )
    with Store(db) as store:  # the restart: a fresh pipeline, its memory empty
        restored = store.awaiting_samples(limit=10)
        assert sorted(event.event_id for event, _ in restored) == ["inline", "waits"]
        event, position = next(pair for pair in restored if pair[0].event_id == "waits")
        assert (event.client_id, event.ts, position.offset) == ("c1", T0, 0)
        assert [e.event_id for e, _ in store.awaiting_samples(limit=1)] == ["inline"]  # the newest first
        pipeline = Pipeline(World().cfg, store.load_timeline())
        pipeline.await_samples(restored)
        run(
            ListSource(
                [
                    *snapshot_envelopes(feed)[1:],
                    feed(RecordKind.SAMPLE, json.dumps({"token": waiting}).encode()),
                    feed(RecordKind.SAMPLE, json.dumps({"token": inline_unknown}).encode()),
                ]
            ),
            pipeline,
            store,
        )
        after = store.con.execute("SELECT event_id, cause, confidence, client_id FROM classifications ORDER BY 1")
        assert after.fetchall() == [
            ("inline", "valid", "verified", None),
            ("no-hash", "expired", "reported", None),
            ("waits", "audience_mismatch", "verified", "c1"),
        ]


def test_late_snapshot_rejudges_unknown_kids(tmp_path: Path) -> None:
    feed = Feed()
    snapshots = snapshot_envelopes(feed)
    pipeline = Pipeline(World().cfg)
    early = pipeline.process([snapshots[0], feed(RecordKind.EVENT, ev("a", token=mint("rsa-2")))])
    assert [j.verdict.classification.cause.value for j in early.judged] == ["unknown_kid"]
    later = pipeline.process(snapshots[1:])
    assert [j.verdict.classification.cause.value for j in later.judged] == ["valid"]


def test_dead_letters_keep_reason_and_position_and_never_the_token(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    token = mint("rsa-2")
    bad = [b"\xff\xfe", b"{", ev("x", service="nobody", token=token), json.dumps({"token": 5}).encode()]
    envelopes = [*snapshot_envelopes(feed), feed(RecordKind.EVENT, ev("good", token=token))]
    envelopes += [feed(RecordKind.EVENT, b) for b in bad[:3]] + [feed(RecordKind.SAMPLE, bad[3])]
    with Store(db) as store:
        run(ListSource(envelopes), Pipeline(World().cfg), store)
    letters = rows(
        db, "SELECT source, source_offset, kind, reason, excerpt FROM dead_letters ORDER BY kind, source_offset"
    )
    assert [(r[0], r[1], r[2]) for r in letters] == [
        ("topic.event", 1, "event"),
        ("topic.event", 2, "event"),
        ("topic.event", 3, "event"),
        ("topic.sample", 0, "sample"),
    ]
    reasons = [r[3] for r in letters]
    assert reasons[0].startswith("not UTF-8") and reasons[1].startswith("not JSON")
    assert "service 'nobody' is not in the config" in reasons[2] and reasons[3].startswith("token")
    assert all(segment not in str(letters) for segment in token.split(".")[1:])
    assert rows(db) == [("good", "valid", "verified")]


def test_reingesting_the_same_files_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    (tmp_path / "jwks.jsonl").write_text("".join(s.model_dump_json() + "\n" for s in default_snapshots()))
    (tmp_path / "events.jsonl").write_bytes(b"\n".join([ev(str(n), token=mint("ec-1")) for n in range(50)] + [b"{"]))
    source = FileSource(tmp_path / "events.jsonl", snapshots=tmp_path / "jwks.jsonl", batch_size=7)
    for _ in range(2):
        with Store(db) as store:
            run(source, Pipeline(World().cfg), store)
    counts = rows(
        db,
        "SELECT (SELECT count(*) FROM classifications), (SELECT count(DISTINCT event_id) FROM "
        "classifications), (SELECT count(*) FROM dead_letters), (SELECT count(*) FROM jwks_snapshots)",
    )
    assert counts == [(50, 50, 1, 5)]


def test_a_failed_batch_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    with Store(db) as store:
        store.write(pipeline.process(snapshot_envelopes(feed)), pipeline.timeline)
        batch = pipeline.process([feed(RecordKind.EVENT, ev("a", token=mint("ec-1")))])
        import pipeline.io.store as store_module

        upsert = store_module.Store._upsert

        def explode(self: Store, table: Any, into: str, *args: Any) -> Any:
            if into == "jwks_snapshots":  # after the rows, before the positions
                raise RuntimeError("disk full")
            return upsert(self, table, into, *args)

        monkeypatch.setattr(store_module.Store, "_upsert", explode)
        batch.snapshots.append(default_snapshots()[0])
        with pytest.raises(RuntimeError):
            store.write(batch, pipeline.timeline)
        assert store.con.execute("SELECT count(*) FROM classifications").fetchone() == (0,)
        assert store.positions() == {("topic.snapshot", 0): 5}


def test_key_timeline_and_rotations_are_stored(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    with Store(db) as store:
        run(ListSource(snapshot_envelopes(feed)), Pipeline(World().cfg), store)
        restored = store.load_timeline()
    rotations = rows(db, "SELECT kid, action FROM key_rotations ORDER BY ts, kid")
    assert rotations == [("rsa-2", "added"), ("rsa-1", "removed"), ("rsa-3", "added")]
    assert sorted(k.kid or "" for k in restored.all_keys()) == ["ec-1", "ed-1", "rsa-1", "rsa-2", "rsa-3", "stg-1"]
    stored = rows(db, "SELECT jwks FROM jwks_snapshots")
    assert all('"d"' not in r[0] for r in stored)


def test_bounded_join_state_under_a_flood_of_unique_fingerprints() -> None:
    feed = Feed()
    limits = PipelineLimits(max_samples=50, max_waiting=40, max_waiting_for_key=30)
    pipeline = Pipeline(World().cfg, limits=limits)
    pipeline.process(snapshot_envelopes(feed))
    for n in range(500):
        pipeline.process(
            [
                feed(RecordKind.EVENT, ev(f"e{n}", token_sha256=f"{n:064x}")),
                feed(RecordKind.SAMPLE, json.dumps({"token": f"junk.{n}.x"}).encode()),
                feed(RecordKind.EVENT, ev(f"k{n}", token=mint(f"made-up-{n % 7}", signer="rogue"))),
            ]
        )
    sizes = pipeline.state_sizes
    assert sizes["samples"] == 50 and sizes["awaiting_sample"] == 40 and sizes["awaiting_key"] == 30


def test_events_repeating_one_unsampled_token_are_capped_as_events_not_tokens() -> None:
    """A client retrying with a token whose sample never comes adds an event per request."""
    feed = Feed()
    token = mint("rsa-2", claims=good_claims(aud="api://orders"))
    pipeline = Pipeline(World().cfg, limits=PipelineLimits(max_waiting=25))
    pipeline.process(snapshot_envelopes(feed))
    for chunk in range(10):
        pipeline.process(
            [feed(RecordKind.EVENT, ev(f"e{chunk}-{n}", token_sha256=fingerprint(token))) for n in range(20)]
        )
    other = mint("rsa-2", claims=good_claims(jti="other"))
    pipeline.process([feed(RecordKind.EVENT, ev("last", token_sha256=fingerprint(other)))])
    assert pipeline.state_sizes["awaiting_sample"] == 25
    late = pipeline.process([feed(RecordKind.SAMPLE, json.dumps({"token": token}).encode())])
    newest = [f"e8-{n}" for n in range(16, 20)] + [f"e9-{n}" for n in range(20)]  # 24 of that token + "last"
    assert [j.event.event_id for j in late.judged] == newest
    assert pipeline.state_sizes["awaiting_sample"] == 1  # "last" still waits


def test_schema_version_is_recorded_and_a_newer_store_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    Store(db).close()
    assert rows(db, "SELECT value FROM store_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    con = duckdb.connect(str(db))
    con.execute("UPDATE store_meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="newer than this jwtriage"):
        Store(db)


def test_a_version_1_store_loses_its_growing_keys_and_keeps_its_rows(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    first = [
        *snapshot_envelopes(feed),
        feed(RecordKind.EVENT, ev("a", token=mint("ec-1"))),
        feed(RecordKind.EVENT, b"{"),
    ]
    with Store(db) as store:
        run(ListSource(first), pipeline, store)
    con = duckdb.connect(str(db))  # turn it into the schema version 1 store an older jwtriage wrote
    for table, key in V1_KEYS.items():
        con.execute(f"ALTER TABLE {table} RENAME TO current")
        con.execute(create_statement(table)[:-1].rstrip() + f",\n    PRIMARY KEY ({key})\n)")
        con.execute(f"INSERT INTO {table} SELECT * FROM current")
        con.execute("DROP TABLE current")
    con.execute("UPDATE store_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    assert rows(db, KEYS_OF_GROWING_TABLES) == [(3,)]

    with Store(db) as store:  # migrates
        again = [
            *snapshot_envelopes(feed)[:1],
            feed(RecordKind.EVENT, ev("a", token=mint("ec-1", claims=good_claims(aud="x")))),
        ]
        run(ListSource(again), pipeline, store)
    assert rows(db, KEYS_OF_GROWING_TABLES) == [(0,)]
    assert rows(db) == [("a", "audience_mismatch", "verified")]  # kept, then replaced by event_id
    assert rows(db, "SELECT (SELECT count(*) FROM jwks_snapshots), (SELECT count(*) FROM dead_letters)") == [(5, 1)]
    assert rows(db, "SELECT value FROM store_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


def test_an_event_sent_again_later_replaces_its_row_across_batches(tmp_path: Path) -> None:
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    late = T0 - timedelta(hours=6)  # far older than the batch around it: its row group is not the newest
    with Store(db) as store:
        store.write(pipeline.process(snapshot_envelopes(feed)), pipeline.timeline)
        store.write(
            pipeline.process([feed(RecordKind.EVENT, ev("old", ts=_iso(late), token=mint("ec-1")))]), pipeline.timeline
        )
        for n in range(3):
            events = [feed(RecordKind.EVENT, ev(f"b{n}-{i}", token=mint("ec-1"))) for i in range(20)]
            store.write(pipeline.process(events), pipeline.timeline)
        again = [
            feed(RecordKind.EVENT, ev("b0-3", token=mint("ec-1"))),
            feed(RecordKind.EVENT, ev("old", ts=_iso(late))),
        ]
        store.write(pipeline.process(again), pipeline.timeline)
    assert rows(db, "SELECT count(*), count(DISTINCT event_id) FROM classifications") == [(61, 61)]
    assert rows(db, "SELECT confidence FROM classifications WHERE event_id = 'old'") == [("reported",)]


def test_events_at_the_edges_of_time_are_stored_and_replaced(tmp_path: Path) -> None:
    """Times whose UTC instant Python's datetime cannot hold (year 10000, year 0) still upsert."""
    feed, db = Feed(), tmp_path / "s.duckdb"
    pipeline = Pipeline(World().cfg)
    edges = {"late": "9999-12-31T23:59:59-05:00", "early": "0001-01-01T00:00:00+01:00"}
    with Store(db) as store:
        store.write(pipeline.process(snapshot_envelopes(feed)), pipeline.timeline)
        for _ in range(2):
            events = [feed(RecordKind.EVENT, ev(name, ts=ts, token=mint("ec-1"))) for name, ts in edges.items()]
            store.write(pipeline.process(events), pipeline.timeline)
    assert rows(db, "SELECT event_id, count(*) FROM classifications GROUP BY ALL ORDER BY 1") == [
        ("early", 1),
        ("late", 1),
    ]


V1_KEYS = {
    "classifications": "event_id",
    "jwks_snapshots": "issuer, fetched_at",
    "dead_letters": "source, source_partition, source_offset",
}
KEYS_OF_GROWING_TABLES = (
    "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
    "AND table_name IN ('classifications', 'jwks_snapshots', 'dead_letters')"
)


def test_store_ddl_in_schemas_is_in_sync(tmp_path: Path) -> None:
    write_ddl(tmp_path / "store.sql")
    assert (ROOT / "schemas" / "store.sql").read_text() == (tmp_path / "store.sql").read_text(), (
        "run `python -m pipeline.io.store_schema` to regenerate schemas/store.sql"
    )
    assert "CREATE TABLE IF NOT EXISTS classifications" in DDL


def test_readers_get_a_hint_when_there_is_no_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="jwtriage demo"):
        connect_readonly(tmp_path / "none.duckdb")


def test_a_token_inside_the_events_free_text_never_reaches_the_store(tmp_path: Path) -> None:
    """Validators can print the token in their message (IdentityModel with ShowPII); the store keeps a fingerprint."""
    feed, db = Feed(), tmp_path / "s.duckdb"
    token = mint("rsa-2")
    message = f"IDX10223: Lifetime validation failed. The token is expired. token: '{token}'"
    event = ev("a", reported_error=message, client_id=token, request_id="keyboard-layout.json 3f2a-9c1e")
    with Store(db) as store:
        run(ListSource([*snapshot_envelopes(feed), feed(RecordKind.EVENT, event)]), Pipeline(World().cfg), store)
    [(error, client_id, request_id, cause)] = rows(
        db, "SELECT reported_error, client_id, request_id, cause FROM classifications"
    )
    mark = f"<token sha256:{fingerprint(token)[:12]}…>"
    assert error == f"IDX10223: Lifetime validation failed. The token is expired. token: '{mark}'"
    assert client_id == mark
    assert request_id == "keyboard-layout.json 3f2a-9c1e"  # text that only looks a little like base64url stays
    assert cause == "expired"  # judged on the message as sent


def test_a_second_writer_is_refused_with_a_hint(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "s.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pipeline.io.store import Store\n"
            f"s = Store({str(db)!r})\nprint('open', flush=True)\ntime.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="Only one process may write a store"):
            Store(db)
    finally:
        holder.kill()
        holder.communicate()


def test_positions_move_forward_per_partition_and_new_partitions_are_added(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    with Store(tmp_path / "s.duckdb") as store:
        store.write(Batch(positions={("events", 0): 10, ("events", 1): 4}), KeyTimeline())
        store.write(Batch(positions={("events", 1): 9, ("samples", 0): 2}), KeyTimeline())
        assert store.positions() == {("events", 0): 10, ("events", 1): 9, ("samples", 0): 2}
        (rows,) = store.con.execute("SELECT count(*) FROM source_positions").fetchone() or (None,)
        assert rows == 3  # updated in place, never a second row for a partition
        store.con.begin()
        store.save_positions({("events", 0): 12}, datetime.now(UTC))
        store.con.rollback()  # positions are part of the batch's transaction: rolled back with it
        assert store.positions()[("events", 0)] == 10


# -- the one loop ------------------------------------------------------------------------------


class RecordingSource:
    """A committing source that yields the given units (an empty one is an idle poll) and logs commits."""

    def __init__(self, units: list[list[Envelope]], log: list[str]) -> None:
        self.units, self.log = units, log

    def batches(self) -> Any:
        yield from self.units

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        self.log.append(f"commit {sorted(positions.items())}")


class RecordingSink:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def write(self, batch: Batch, timeline: KeyTimeline) -> None:
        self.log.append(f"write {len(batch.judged)} judged, positions {sorted(batch.positions.items())}")


def test_the_loop_writes_then_commits_then_observes_and_ticks_after_every_unit() -> None:
    feed, log = Feed(), []
    snapshots = snapshot_envelopes(feed)
    events = [feed(RecordKind.EVENT, ev("a", token=mint("ec-1"))), feed(RecordKind.EVENT, ev("b", token=mint("rsa-2")))]
    source = RecordingSource([snapshots, [], events], log)
    stats = run(
        source,
        Pipeline(World().cfg),
        RecordingSink(log),
        on_batch=lambda batch, stats: log.append(f"on_batch {stats.batches}"),
        on_tick=lambda: log.append("tick"),
    )
    assert log == [
        "write 0 judged, positions [(('topic.snapshot', 0), 5)]",
        "commit [(('topic.snapshot', 0), 5)]",
        "on_batch 1",
        "tick",
        "tick",  # the idle unit: no write, no commit, only the periodic work
        "write 2 judged, positions [(('topic.event', 0), 2)]",
        "commit [(('topic.event', 0), 2)]",
        "on_batch 2",
        "tick",
    ]
    assert (stats.batches, stats.records, stats.events) == (2, 7, 2)
    assert stats.process_seconds > 0


def test_a_stop_request_ends_the_loop_after_the_batch_in_hand_is_committed() -> None:
    feed, log = Feed(), []
    units = [[feed(RecordKind.EVENT, ev(f"e{n}", token=mint("ec-1")))] for n in range(4)]
    requested = False

    def on_batch(batch: Batch, stats: Any) -> None:
        nonlocal requested
        requested = stats.batches == 2  # e.g. SIGTERM while the second batch was being written

    source, sink = RecordingSource(units, log), RecordingSink(log)
    stats = run(source, Pipeline(World().cfg), sink, on_batch, stop=lambda: requested)
    assert stats.batches == 2
    assert log[-1] == "commit [(('topic.event', 0), 2)]"


# -- event formats -------------------------------------------------------------------------------


def test_an_unknown_event_format_is_a_usage_error() -> None:
    from pipeline.errors import UsageError

    known = r"\(known: aws-httpapi, envoy, jwtriage, kong, nginx\)"
    with pytest.raises(UsageError, match=r"unknown event format 'apache' " + known):
        Pipeline(World().cfg, event_format="apache")


def test_a_format_can_skip_a_record_without_a_dead_letter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway log holds lines that are no auth failure: skipped, not judged, not dead letters; positions move on."""
    from pipeline.io import formats
    from pipeline.models import AuthFailureEvent
    from pipeline.records import RecordError

    def access_log(raw: bytes, max_bytes: int) -> AuthFailureEvent | None:
        status, _, rest = raw.partition(b" ")
        if status == b"200":
            return None
        if status != b"401":
            raise RecordError(f"status {status.decode()!r} is not an HTTP status")
        return formats.decode_jwtriage_event(rest, max_bytes)

    monkeypatch.setitem(formats.EVENT_FORMATS, "test-access-log", access_log)
    feed = Feed()
    lines = [b"200 GET /health", b"401 " + ev("a", token=mint("ec-1")), b"abc nonsense", b"200 GET /"]
    envelopes = [*snapshot_envelopes(feed), *(feed(RecordKind.EVENT, line) for line in lines)]
    pipeline = Pipeline(World().cfg, event_format="test-access-log")
    batch = pipeline.process(envelopes)
    assert [j.event.event_id for j in batch.judged] == ["a"]
    assert [(d.position.offset, d.reason) for d in batch.dead_letters] == [(2, "status 'abc' is not an HTTP status")]
    assert batch.positions[("topic.event", 0)] == 4  # the skipped last line counts as read
    assert batch.skipped == {"test-access-log": 2} and pipeline.counts["skipped"] == 2

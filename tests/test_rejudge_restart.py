"""Re-judging stored rows when a late snapshot arrives holds across restarts (`pipeline.rejudge`).

A consumer that stops after storing events, and starts again with an empty memory, must end
with the same rows as one that never stopped, when a snapshot arrives after the restart that
(a) is dated before stored events (their key was removed before them: `retired_key`), or
(b) brings the kid of a stored inline-token `unknown_kid` event. The records are read again
from the source by the position each row carries (here a list or a JSONL file).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.tokens import fingerprint
from pipeline.io.files import FileSource, fetch_lines
from pipeline.io.memory import ListSource
from pipeline.io.store import Store
from pipeline.records import Envelope, Position, RecordKind
from pipeline.rejudge import RejudgeLimits, StoredRejudge
from pipeline.runner import Pipeline, run
from tests.world import CORP, T0, World, default_snapshots, good_claims, mint, snapshot

COLUMNS = "event_id, cause, confidence, findings, detail, kid, key_thumbprint, skew_seconds"


def _iso(at: Any) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def ev(event_id: str, at: Any = T0, **fields: Any) -> bytes:
    body = {"event_id": event_id, "ts": _iso(at), "service": "payments-api",
            "service_jwks_fetched_at": _iso(at - timedelta(minutes=5)), **fields}
    return json.dumps(body).encode()


SAMPLED = mint("rsa-2", claims=good_claims(jti="sampled"))
EVENTS = [
    ev("retired", token=mint("rsa-2")),  # valid, until a late snapshot says rsa-2 was removed at T0-10m
    ev("before", at=T0 - timedelta(minutes=20), token=mint("rsa-2", claims=good_claims(T0 - timedelta(minutes=20)))),
    ev("unknown", token=mint("rsa-3")),  # unknown_kid until the T0+1h snapshot publishes rsa-3
    ev("joined", token_sha256=fingerprint(SAMPLED)),  # its token only through the sample
    ev("reported", reported_error="Jwt is expired"),
]
LATE = [
    snapshot(CORP, T0 - timedelta(minutes=10), ["rsa-1", "ec-1", "ed-1"]),  # late: dated before the events
    default_snapshots()[3],  # T0+1h: rsa-2 back, rsa-3 published
]


def streams() -> tuple[list[Envelope], list[Envelope], list[Envelope]]:
    """(snapshots then samples then events; the late snapshots; the samples alone), with positions."""
    early = [s for s in default_snapshots() if s not in LATE]
    keys = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, n))
            for n, s in enumerate(early)]
    samples = [Envelope(RecordKind.SAMPLE, json.dumps({"token": SAMPLED}).encode(), Position("samples", 0, 0))]
    events = [Envelope(RecordKind.EVENT, value, Position("events", 0, n)) for n, value in enumerate(EVENTS)]
    late = [Envelope(RecordKind.SNAPSHOT, s.model_dump_json().encode(), Position("jwks", 0, len(keys) + n))
            for n, s in enumerate(LATE)]
    return keys + samples + events, late, samples


def stored(db: Path) -> list[tuple[Any, ...]]:
    with Store(db) as store:
        return store.con.execute(f"SELECT {COLUMNS} FROM classifications ORDER BY event_id").fetchall()


def never_stopped(db: Path) -> list[tuple[Any, ...]]:
    first, late, _ = streams()
    with Store(db) as store:
        run(ListSource(first + late), Pipeline(World().cfg), store)
    return stored(db)


def restarted(db: Path, fetcher: Any = None, attach: bool = True, limits: RejudgeLimits | None = None) -> Any:
    """Store the first part, stop (memory gone), start again as `consume` does, then the late snapshots."""
    first, late, samples = streams()
    with Store(db) as store:
        run(ListSource(first), Pipeline(World().cfg), store)
    with Store(db) as store:
        pipeline = Pipeline(World().cfg, store.load_timeline())
        pipeline.await_samples(store.awaiting_samples(100))
        run(ListSource(samples), pipeline, store)  # the recent samples read again
        rejudge = None
        if attach:
            rejudge = pipeline.stored = StoredRejudge(store, fetcher or ListSource(first + late), limits)
        run(ListSource(late), pipeline, store)
    return rejudge


def test_a_restarted_pipeline_ends_with_the_rows_of_one_that_never_stopped(tmp_path: Path) -> None:
    expected = never_stopped(tmp_path / "whole.duckdb")
    causes = {row[0]: row[1] for row in expected}
    assert causes == {"before": "valid", "joined": "retired_key", "reported": "expired",
                      "retired": "retired_key", "unknown": "unpublished_key"}
    rejudge = restarted(tmp_path / "restarted.duckdb")
    assert stored(tmp_path / "restarted.duckdb") == expected
    assert rejudge is not None and rejudge.counts["rejudged"] == 3  # retired, joined, unknown
    assert rejudge.counts["gone"] == rejudge.counts["no_sample"] == rejudge.counts["beyond_bound"] == 0


def test_without_it_a_restart_leaves_the_rows_the_late_snapshot_changes(tmp_path: Path) -> None:
    """The gap this closes: memory alone forgets what a restart empties."""
    restarted(tmp_path / "forgetful.duckdb", attach=False)
    causes = {row[0]: row[1] for row in stored(tmp_path / "forgetful.duckdb")}
    assert causes["retired"] == "valid" and causes["unknown"] == "unknown_kid"


def test_records_are_read_again_from_a_jsonl_file_by_line(tmp_path: Path) -> None:
    expected = never_stopped(tmp_path / "whole.duckdb")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(EVENTS) + b"\n")
    jwks, samples = tmp_path / "jwks.jsonl", tmp_path / "samples.jsonl"
    jwks.write_text("".join(s.model_dump_json() + "\n" for s in default_snapshots() if s not in LATE))
    samples.write_text(json.dumps({"token": SAMPLED}) + "\n")
    db = tmp_path / "files.duckdb"
    source = FileSource(events, snapshots=jwks, samples=samples)
    with Store(db) as store:
        run(source, Pipeline(World().cfg), store)
    late = tmp_path / "late.jsonl"
    late.write_text("".join(s.model_dump_json() + "\n" for s in LATE))
    with Store(db) as store:
        pipeline = Pipeline(World().cfg, store.load_timeline())
        # The recent samples read again, as the consumer does at start-up.
        run(ListSource([Envelope(RecordKind.SAMPLE, samples.read_bytes().strip(), Position(str(samples), 0, 1))]),
            pipeline, store)
        pipeline.stored = StoredRejudge(store, source)
        run(ListSource([Envelope(RecordKind.SNAPSHOT, line, Position(str(late), 0, n))
                        for n, line in enumerate(late.read_bytes().splitlines(), 1)]), pipeline, store)
    assert [(r[0], r[1]) for r in stored(db)] == [(r[0], r[1]) for r in expected]
    assert fetch_lines([Position(str(events), 0, 3), Position(str(events), 0, 99)], 1 << 20) == {
        Position(str(events), 0, 3): EVENTS[2]
    }


class _Nothing:
    """A source whose records are all past retention."""

    def fetch(self, positions: Any, max_bytes: int) -> dict[Position, bytes]:
        return {}


def test_records_past_retention_are_counted_logged_and_let_go(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "gone.duckdb"
    with caplog.at_level(logging.WARNING, logger="pipeline.rejudge"):
        rejudge = restarted(db, fetcher=_Nothing())
    assert rejudge is not None and rejudge.counts["gone"] >= 2 and rejudge.counts["rejudged"] == 0
    assert "no longer in the source" in caplog.text
    with Store(db) as store:  # the unknown_kid event is no longer looked for: it cannot be read again
        assert store.con.execute("SELECT count(*) FROM awaiting_key").fetchone() == (0,)


def test_rows_beyond_the_bound_are_counted_not_dropped_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.rejudge"):
        rejudge = restarted(tmp_path / "bounded.duckdb", limits=RejudgeLimits(max_rows=1))
    assert rejudge is not None and rejudge.counts["beyond_bound"] >= 1 and rejudge.counts["selected"] <= 2
    assert "beyond the bound" in caplog.text


def test_the_awaiting_key_index_follows_the_rows(tmp_path: Path) -> None:
    first, late, _ = streams()
    db = tmp_path / "index.duckdb"
    with Store(db) as store:
        run(ListSource(first), Pipeline(World().cfg), store)
        rows = store.con.execute("SELECT event_id, kid, source, source_offset FROM awaiting_key").fetchall()
        assert rows == [("unknown", "rsa-3", "events", 2)]
        run(ListSource(first + late), Pipeline(World().cfg), store)  # judged again: unpublished_key
        assert store.con.execute("SELECT count(*) FROM awaiting_key").fetchone() == (0,)


def test_the_awaiting_key_index_follows_a_rolled_back_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store skips the index's statements while it knows the index empty: a rollback must make it count again.

    The failed batch takes "unknown" out of the index (judged again: unpublished_key), then
    fails before its commit; the rollback puts the row back. Had the store kept its count
    (0) from before the rollback, the next batch would skip the statements and leave it there.
    """
    first, late, _ = streams()
    with Store(tmp_path / "rollback.duckdb") as store:
        run(ListSource(first), Pipeline(World().cfg), store)
        assert store.con.execute("SELECT count(*) FROM awaiting_key").fetchone() == (1,)

        def disk_full(*args: Any) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(store, "save_positions", disk_full)
        with pytest.raises(OSError, match="disk full"):
            run(ListSource(first + late), Pipeline(World().cfg), store)
        monkeypatch.undo()
        assert store.con.execute("SELECT count(*) FROM awaiting_key").fetchone() == (1,)
        run(ListSource(first + late), Pipeline(World().cfg), store)
        assert store.con.execute("SELECT count(*) FROM awaiting_key").fetchone() == (0,)


def test_re_judging_keeps_no_token_in_the_store(tmp_path: Path) -> None:
    """What re-judging needs is the row's source position, never the token (nor its signature)."""
    db = tmp_path / "clean.duckdb"
    restarted(db)
    tokens = [SAMPLED, *(json.loads(value).get("token") for value in EVENTS)]
    signatures = [token.rsplit(".", 1)[1] for token in tokens if token]
    with Store(db) as store:
        dump = json.dumps(store.con.execute("SELECT * FROM awaiting_key").fetchall(), default=str)
        dump += json.dumps(store.con.execute("SELECT * FROM classifications").fetchall(), default=str)
    assert signatures and not any(signature in dump for signature in signatures)
    assert "eyJ" not in dump


def test_a_version_2_store_gets_its_awaiting_key_index_from_its_rows(tmp_path: Path) -> None:
    first, _, _ = streams()
    db = tmp_path / "v2.duckdb"
    with Store(db) as store:
        run(ListSource(first), Pipeline(World().cfg), store)
        store.con.execute("DROP TABLE awaiting_key")
        store.con.execute("UPDATE store_meta SET value = '2' WHERE key = 'schema_version'")
    with Store(db) as store:  # migrates to 3
        rows = store.con.execute("SELECT event_id, kid, source_offset FROM awaiting_key").fetchall()
    assert rows == [("unknown", "rsa-3", 2)]

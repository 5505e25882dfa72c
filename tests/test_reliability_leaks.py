"""No leak: after a full simulated scenario through Kafka, no raw token material is anywhere we write.

Fault: credentials in the input, everywhere they can be: every token of a simulated day
(inline, sampled, malformed, JWE, attacks; the scenario's bad lines include a line cut in
the middle of a token), plus bait records that carry a whole token into the dead letters
(wrong type, not UTF-8, over the size limit, a bad sample). The consumer runs with `-v`
(verbose logging), a dead-letter topic, and its output captured.

What must hold (DESIGN.md: "Raw tokens are credentials: never written to DuckDB, logs,
dead letters or the dashboard"): no payload or signature segment of any token, whole or a
fragment of 15+ characters, appears in the DuckDB files (live, published and WAL, as raw
bytes, and every table's values through SQL), the dead-letter topic, the consumer's stdout
and stderr, `jwtriage report` (Markdown and HTML), `jwtriage triage` (text and JSON),
`jwtriage explain` (text and JSON), or anything the dashboard sends to a browser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.io.store_readers import connect_readonly
from pipeline.io.store_schema import parts_dir
from tests.reliability.commands import in_process
from tests.reliability.kafka_run import KafkaRun, produce_tracked, read_topic
from tests.reliability.leaks import Leak, SecretIndex, tokens_in
from tests.reliability.scenarios import Expected, assert_exactly_once, scenario, tagged_records

pytestmark = pytest.mark.kafka

SEED, EVENTS = 31, 4_000
APP = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"
PAGES = ("views/overview.py", "views/rotations.py", "views/triage.py", "views/live.py")


@pytest.fixture
def run(tmp_path: Path) -> Iterator[KafkaRun]:
    sc = scenario(EVENTS, SEED)
    kafka_run = KafkaRun.create(tmp_path / "run", sc.config_toml)
    kafka_run.env["JWTRIAGE_KAFKA__DEAD_LETTER_TOPIC"] = kafka_run.kafka.failures_topic + ".dlq"
    try:
        yield kafka_run
    finally:
        kafka_run.close()


def bait(token: str, service: str) -> list[bytes]:
    """Bad records that carry a whole token: each becomes a dead letter, whose excerpt must not."""
    event = {"event_id": "bait", "ts": "2026-11-23T06:00:00Z", "service": service, "token": token}
    return [
        json.dumps({**event, "event_id": 7}).encode(),  # wrong type
        b"\xff" + json.dumps(event).encode(),  # not UTF-8
        json.dumps({**event, "ts": "2026-11-23T06:00:00"}).encode(),  # no UTC offset
        json.dumps({**event, "service": "nobody"}).encode(),  # unknown service
        (json.dumps(event)[:-1] + ', "pad": "' + "x" * 1_100_000 + '"}').encode(),  # over the size limit
        f"Authorization: Bearer {token}".encode(),  # not JSON
    ]


def dashboard_bytes(db: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Everything the dashboard's pages would send to a browser (the element protos), page by page."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("JWTRIAGE_DB", str(db))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    seen: dict[str, bytes] = {}
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        seen[page] = _tree_bytes(at._tree)
    at.switch_page("views/triage.py").run()
    at.selectbox(key="window").set_value(timedelta(hours=24)).run()
    for cause in at.multiselect(key="ev_cause").options:
        at.multiselect(key="ev_cause").set_value([cause]).run()
        assert not at.exception, [e.value for e in at.exception]
        seen[f"triage evidence ({cause})"] = _tree_bytes(at._tree)
    return seen


def _tree_bytes(node: Any) -> bytes:
    parts: list[bytes] = []
    proto = getattr(node, "proto", None)
    if proto is not None and hasattr(proto, "SerializeToString"):
        parts.append(proto.SerializeToString())
    children = getattr(node, "children", None) or {}
    for child in children.values():
        parts.append(_tree_bytes(child))
    return b"\n".join(parts)


def test_no_raw_token_material_reaches_the_store_logs_dead_letters_reports_or_dashboard(
    run: KafkaRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [time.monotonic()]

    def lap() -> str:
        clock.append(time.monotonic())
        return f"{clock[-1] - clock[-2]:.0f} s"

    sc = scenario(EVENTS, SEED)
    records = [(r.topic, r.key, r.value) for r in tagged_records(sc, run.kafka)]
    tokens = tokens_in(r.value for r in [*sc.events, *sc.samples])
    sample = max((t for t in tokens if t.count(".") == 2), key=len)
    service = json.loads(sc.events[0].value)["service"]
    baits = bait(sample, service)
    records += [(run.kafka.failures_topic, "bait", b) for b in baits]
    records.append((run.kafka.samples_topic, None, json.dumps({"token": sample, "sampled_at": "noon"}).encode()))
    produce_tracked(run.kafka, records)

    index = SecretIndex(tokens)
    assert index.segments > 1_000, "too few token segments: is the scenario producing tokens?"
    assert index.find(b'{"x": "' + sample.split(".")[2][5:30].encode() + b'"}', "self-check"), "the scanner is blind"

    consumer = run.consumer("--batch-size", "500", "--publish-interval", "0.5", "--exit-when-idle", "2", verbose=True)
    assert consumer.wait(timeout=300) == 0, consumer.output()[-3000:]
    laps = [f"produced and consumed in {lap()}"]
    expected = Expected.of(sc)
    assert_exactly_once(run, Expected(expected.causes, expected.dead_letters + len(baits) + 1))

    places: dict[str, bytes] = {}
    folder = parts_dir(run.db)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):  # the live files and every Parquet part
        places[f"file {path.relative_to(folder)}"] = path.read_bytes()
    assert any(name.endswith(".parquet") for name in places), "the scan found no published Parquet part"
    places["file (the store's view file)"] = Path(run.db).read_bytes()
    con = connect_readonly(run.db)
    try:
        for (table,) in con.execute("SELECT DISTINCT table_name FROM information_schema.tables").fetchall():
            places[f"table {table}"] = repr(con.execute(f'SELECT * FROM "{table}"').fetchall()).encode()
    finally:
        con.close()
    places["consumer stdout"] = consumer.stdout.read_bytes()
    places["consumer stderr (-v)"] = consumer.stderr.read_bytes()
    # The verbose log was really captured: kafka-python's own lines appear only with -v.
    assert places["consumer stderr (-v)"].count(b"jwtriage: INFO:") > 10, places["consumer stderr (-v)"][-2000:]

    places["dead-letter topic"] = b"\n".join(read_topic(run.kafka, run.env["JWTRIAGE_KAFKA__DEAD_LETTER_TOPIC"]))
    assert places["dead-letter topic"].count(b'"reason"') == expected.dead_letters + len(baits) + 1

    laps.append(f"store, logs and dead letters read in {lap()}")
    db = str(run.db)
    html = tmp_path / "report.html"
    places["report md"] = in_process(["report", "--db", db, "--format", "md"]).encode()
    laps.append(f"report md {lap()}")
    in_process(["report", "--db", db, "--format", "html", "--out", str(html)])
    places["report html"] = html.read_bytes()
    laps.append(f"report html {lap()}")
    places["triage"] = in_process(["triage", "--db", db, "--since", "7d"]).encode()
    places["triage --json"] = in_process(["triage", "--db", db, "--since", "7d", "--json"]).encode()
    laps.append(f"triage {lap()}")
    explained = sorted(tokens, key=lambda t: (t.count("."), len(t)))[:: max(1, len(tokens) // 15)]
    for n, token in enumerate(explained):
        for extra in ([], ["--json"]):
            argv = ["-v", "explain", "--config", str(run.config_path), "--db", db, "--service", service,
                    "--at", "2026-11-23T12:00:00Z", *extra]
            places[f"explain {' '.join(extra)} #{n}"] = in_process(argv, token.encode()).encode()
    assert sum(b"Verdict" in v or b'"cause"' in v for k, v in places.items() if k.startswith("explain")) >= 25
    laps.append(f"explain in {lap()}")
    dashboard = dashboard_bytes(run.db, monkeypatch)
    places.update({f"dashboard {page}": blob for page, blob in dashboard.items()})
    # What the scan reads of the dashboard holds its tables' cells (token fingerprints, in the triage tables).
    fingerprints = {fp[:12].encode() for (fp,) in run.query("SELECT token_sha256 FROM classifications") if fp}
    assert any(fp in blob for blob in dashboard.values() for fp in fingerprints), "no table cells in the dashboard"
    laps.append(f"dashboard in {lap()}")

    leaks: list[Leak] = []
    for where, blob in places.items():
        leaks += index.find(blob, where)
    laps.append(f"scanned in {lap()}")
    assert not leaks, f"{len(leaks)} raw token fragments found:\n" + "\n".join(map(str, leaks[:20]))
    print(f"\nscanned {len(places)} outputs ({sum(map(len, places.values())) / 1e6:.1f} MB) for "
          f"{index.segments:,} segments of {len(tokens):,} tokens: no leak ({', '.join(laps)})")

"""The Grafana dashboard (deploy/grafana): every query names metrics and labels the consumer exports and
parses (promtool); and, on the broker, the real Prometheus scraping a real consumer answers every panel
and annotation query with data."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import load_config
from pipeline.io.kafka import produce, scenario_records
from pipeline.metrics import METRIC_NAMES
from pipeline.simulator import simulate, write_scenario
from tests.kafka_helpers import isolated_kafka_env, wait_for_broker
from tests.test_metrics import exported_series

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "jwtriage.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

#: Grafana's variables, as concrete values: the test's scrape interval is 1 s, so 1m spans 60 scrapes
#: (and the whole test run); "All" of a multi-value variable is its allValue, `.*`.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
    "$service": ".*",
    "$issuer": ".*",
}

#: The panels issue 22 asks for, by title.
REQUIRED_PANELS = (
    "Failures by cause",
    "Failures by service",
    "Rotation damage by service",
    "Attacks by kind",
    "JWKS snapshot age per issuer",
    "Consumer lag",
    "Throughput",
    "Classification time per batch",
    "Dead letters by kind",
    "Records lost to broker retention",
)
ROTATION_CAUSES = {"unpublished_key", "stale_jwks", "retired_key"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every Prometheus annotation of the dashboard."""
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in panels() for t in p["targets"]]
    for annotation in dashboard()["annotations"]["list"]:
        if annotation.get("datasource", {}).get("type") == "prometheus":
            # Grafana 11 runs `target`; the top-level `expr` is the older form, kept for older versions.
            assert annotation["expr"] == annotation["target"]["expr"], annotation["name"]
            found.append((f"annotation {annotation['name']!r}", annotation["target"]["expr"]))
    return found


def concrete(expr: str) -> str:
    """The query as Grafana sends it, with the dashboard's variables replaced by concrete values."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace("${" + variable[1:] + "}", value).replace(variable, value)
    assert "$" not in expr, f"a variable the test does not know: {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bjwtriage_[a-z_]+\b", expr))


# -- the dashboard's shape (no broker) -----------------------------------------------------------


def test_every_metric_and_label_a_query_uses_is_exported() -> None:
    series = exported_series()
    assert {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in series} >= set(METRIC_NAMES)
    variables = [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    for where, expr in [*queries(), *(("variable", q) for q in variables)]:
        names = metric_names(expr)
        assert names, f"{where}: no jwtriage metric in {expr}"
        for name in names:
            assert name in series, f"{where}: {name} is not exported"
        labels = {label for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr) for label in group.split(",")}
        for selector in re.findall(r"jwtriage_[a-z_]+\{([^}]*)\}", expr):
            labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
        labels |= set(re.findall(r"label_values\([^,]+,\s*(\w+)\)", expr))
        for label in (part.strip() for part in labels):
            assert any(label in series[n] for n in names), f"{where}: no metric of {sorted(names)} has label {label}"


def test_the_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule: a typo fails here, not on a blank panel."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: apt-get install -y --no-install-recommends prometheus")
        pytest.skip("promtool not installed (apt-get install -y --no-install-recommends prometheus)")
    rules = [{"record": f"dashboard:query_{n}", "expr": concrete(expr)} for n, (_, expr) in enumerate(queries())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_panels_an_sre_needs_are_there() -> None:
    by_title = {p["title"]: p for p in panels()}
    assert set(REQUIRED_PANELS) <= set(by_title)
    stacked = by_title["Failures by cause"]["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"]
    assert stacked == "normal"
    assert "by (cause)" in by_title["Failures by cause"]["targets"][0]["expr"]
    assert "by (service)" in by_title["Failures by service"]["targets"][0]["expr"]
    assert "by (attack)" in by_title["Attacks by kind"]["targets"][0]["expr"]
    assert "by (issuer)" in by_title["JWKS snapshot age per issuer"]["targets"][0]["expr"]
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["description"], panel["title"]


def test_rotation_damage_is_the_three_rotation_causes_and_never_an_attack() -> None:
    """DESIGN.md: unpublished_key, stale_jwks and retired_key, never unknown_kid, never an attack."""
    damage = [p for p in panels() if "Rotation damage" in p["title"]]
    assert len(damage) == 2  # the time series and the stat
    for panel in damage:
        for target in panel["targets"]:
            causes = re.findall(r'cause=~"([^"]*)"', target["expr"])
            assert causes and all(set(c.split("|")) == ROTATION_CAUSES for c in causes), target["expr"]
            assert "unknown_kid" not in target["expr"]
            assert 'attacked="false"' in target["expr"], target["expr"]  # DESIGN.md: never an attack
        assert 'are excluded (attacked="false")' in panel["description"], panel["title"]
    # The counter carries the label the panels filter on (issue 17: it had none, and they could not).
    assert "attacked" in exported_series()["jwtriage_events_total"]


def test_key_changes_are_annotations_at_the_rotation_steps_time() -> None:
    annotations = {a["name"]: a for a in dashboard()["annotations"]["list"]}
    keys = annotations["Key changes"]
    expr = keys["target"]["expr"]
    assert "jwtriage_jwks_key_change_timestamp_seconds" in expr
    assert keys["useValueForTime"] and "* 1000" in expr  # "series value as timestamp" wants milliseconds
    assert keys["enable"]


def test_every_panel_and_annotation_uses_the_dashboards_prometheus_variable() -> None:
    board = dashboard()
    variable = next(v for v in board["templating"]["list"] if v["name"] == "DS_PROMETHEUS")
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert variable["current"]["value"] == provisioned["datasources"][0]["uid"]  # the provisioned one by default
    reference = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels():
        assert panel["datasource"] == reference, panel["title"]
        assert all(t["datasource"] == reference for t in panel["targets"]), panel["title"]
    for annotation in board["annotations"]["list"]:
        if not annotation.get("builtIn"):
            assert annotation["datasource"] == reference, annotation["name"]


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


# -- every query against the real Prometheus scraping a real consumer ----------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: tuple[Path, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


class Prometheus:
    """The HTTP API of a Prometheus server on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}" if params else f"{self.base}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.base}/-/ready", timeout=2).close()
            return True
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan


def prometheus_config(consumer_port: int, path: Path) -> Path:
    """deploy/prometheus/prometheus.yml, scraping the test's consumer every second."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{consumer_port}"]}]
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail("prometheus is missing: apt-get install -y --no-install-recommends prometheus")
        pytest.skip("prometheus not installed (apt-get install -y --no-install-recommends prometheus)")
    return path


@pytest.mark.kafka
def test_every_dashboard_query_returns_data_from_a_real_prometheus(prometheus_binary: str, tmp_path: Path) -> None:
    wait_for_broker()
    env = isolated_kafka_env(f"g{uuid.uuid4().hex[:10]}")
    scenario = simulate(seed=5, events=1_500, hours=24)
    paths = write_scenario(scenario, tmp_path / "scenario")
    kafka = load_config(paths["config"], env).kafka
    good_events = sum(1 for t in scenario.truth if not t.get("dead_letter"))
    consumer_port, prometheus_port = free_port(), free_port()
    consumer_log, prometheus_log = tmp_path / "consumer.log", tmp_path / "prometheus.log"
    # A tenth of the day first: the topics exist when the consumer starts, and its first batch measures
    # the lag (the gauge is refreshed with the batches, at most every 10 s).
    records = list(scenario_records(scenario, kafka))
    produce(kafka, records[: len(records) // 10])
    consumer = server = None
    try:
        with consumer_log.open("wb") as log:
            consumer = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "consume", "--config", str(paths["config"]),
                 "--db", str(tmp_path / "store.duckdb"), "--instance", "c0", "--publish-interval", "1",
                 "--metrics-port", str(consumer_port)],
                env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )
        with prometheus_log.open("wb") as log:
            server = subprocess.Popen(
                [prometheus_binary, f"--config.file={prometheus_config(consumer_port, tmp_path / 'prometheus.yml')}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            )
        prometheus, logs = Prometheus(prometheus_port), (consumer_log, prometheus_log)
        # Scraped before the rest is produced, so the rates see the increase.
        wait_for(lambda: prometheus.ready() and prometheus.value('sum(up{job="jwtriage"})') == 1, 30,
                 "Prometheus scraping the consumer", logs)
        wait_for(lambda: prometheus.value("count(jwtriage_events_total)") > 0, 15, "the consumer's series", logs)
        wait_for(lambda: prometheus.value("count(jwtriage_consumer_lag)") > 0, 15, "the lag gauge", logs)
        produce(kafka, records[len(records) // 10 :])
        # Every event judged (re-judged verdicts count twice in events_total) and every rotation step seen.
        scraped = "sum(jwtriage_events_total) - (sum(jwtriage_events_rejudged_total) or vector(0))"
        wait_for(lambda: prometheus.value(scraped) == good_events, 40, f"{good_events} events scraped", logs)
        wait_for(lambda: len(prometheus.query("jwtriage_jwks_key_change_timestamp_seconds")) == 6, 10,
                 "six rotation steps", logs)
        time.sleep(2)  # two more scrapes after the last batch

        empty = []
        for where, expr in queries():
            result = prometheus.query(concrete(expr))
            values = [float(r["value"][1]) for r in result]
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{where}: {concrete(expr)} -> {result}")
        assert not empty, "queries without data:\n" + "\n".join(empty)

        # The service and issuer variables list what the consumer saw.
        for variable in dashboard()["templating"]["list"]:
            if variable["type"] == "query":
                found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"])
                assert found, variable["query"]
                metric, label = found.groups()
                values = prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": metric})["data"]
                assert values, variable["name"]
        # The activity panels show the stream that just went through, not only zeros.
        by_title = {p["title"]: p for p in panels()}
        for title in ("Failures by cause", "Failures by service", "Rotation damage by service", "Attacks by kind",
                      "Throughput", "Classification time per batch", "Dead letters by kind"):
            expr = concrete(by_title[title]["targets"][0]["expr"])
            assert max(float(r["value"][1]) for r in prometheus.query(expr)) > 0, (title, expr)
        # The annotations fall on the simulated rotation steps (values in ms, inside the simulated day).
        first, last = scenario.snapshots[0].ts.timestamp(), scenario.snapshots[-1].ts.timestamp()
        (annotation,) = (expr for where, expr in queries() if where.startswith("annotation"))
        for series in prometheus.query(concrete(annotation)):
            assert first < float(series["value"][1]) / 1000 <= last, series
        # The server loaded the alert rules beside its config (the docker-compose setup).
        alerts = yaml.safe_load((PROMETHEUS_CONFIG.parent / "alerts.yml").read_text(encoding="utf-8"))
        rules = [rule for group in prometheus.get("/api/v1/rules")["data"]["groups"] for rule in group["rules"]]
        assert len(rules) == sum(len(group["rules"]) for group in alerts["groups"])
        assert all(rule["health"] == "ok" for rule in rules), rules
        assert consumer.poll() is None, consumer_log.read_text()[-3000:]
    finally:
        stop(server)
        stop(consumer)

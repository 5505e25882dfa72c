"""docker-compose.yml cannot run here (no Docker engine): parse it and check what it runs exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
JWTRIAGE_SERVICES = sorted(name for name, spec in SERVICES.items() if "build" in spec)


def test_the_stack_has_kafka_in_kraft_mode_and_the_three_jwtriage_services() -> None:
    assert {"kafka", "consumer", "jwks-watch", "dashboard"} <= set(SERVICES)
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "healthcheck" in kafka


@pytest.mark.parametrize("name", JWTRIAGE_SERVICES)
def test_every_command_is_a_real_jwtriage_command_with_real_flags(name: str) -> None:
    command = SERVICES[name]["command"]
    args = build_parser().parse_args(command)  # exits (SystemExit 2) on an unknown command or flag
    assert args.command == command[0]


@pytest.mark.parametrize("name", JWTRIAGE_SERVICES)
def test_services_mount_what_they_read_and_wait_for_kafka(name: str) -> None:
    spec = SERVICES[name]
    command = " ".join(spec["command"])
    for path in ("/etc/jwtriage/jwtriage.toml", "/data"):
        if path in command:
            assert any(path in volume for volume in spec.get("volumes", [])), (name, path)
    if name != "dashboard":
        assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_published_ports_bind_to_loopback_and_named_volumes_exist() -> None:
    for spec in SERVICES.values():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:")
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("."):
                assert source in COMPOSE["volumes"]


def test_the_image_builds_from_files_that_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def bind_source(name: str, target: str) -> Path | None:
    """The repository path a service sees at `target` through its bind mounts (None when none covers it)."""
    for volume in SERVICES[name].get("volumes", []):
        source, mounted = volume.split(":")[:2]
        if source.startswith(".") and (target == mounted or target.startswith(mounted.rstrip("/") + "/")):
            return ROOT / source / target[len(mounted):].lstrip("/")
    return None


def flag(command: list[str], name: str) -> str:
    """The value of `--name VALUE` or `--name=VALUE` in a command."""
    for n, part in enumerate(command):
        if part == name:
            return command[n + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_prometheus_and_grafana_run_pinned_images_and_mount_files_that_exist(name: str) -> None:
    image = SERVICES[name]["image"]
    assert re.fullmatch(r"[a-z/-]+:v?\d+\.\d+\.\d+", image), f"{image}: pin an exact version"
    for volume in SERVICES[name]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), volume
            assert volume.endswith(":ro"), volume  # the container never writes into the repository


def test_prometheus_scrapes_the_consumers_metrics_port_and_loads_the_alerts() -> None:
    consumer = SERVICES["consumer"]["command"]
    port = flag(consumer, "--metrics-port")
    assert flag(consumer, "--metrics-host") == "0.0.0.0"  # reachable from the prometheus container
    command = SERVICES["prometheus"]["command"]
    config_path = bind_source("prometheus", flag(command, "--config.file"))
    assert config_path is not None and config_path == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"consumer:{port}"]
    for rules in config["rule_files"]:
        assert (config_path.parent / rules).exists(), rules
    assert "alerts.yml" in config["rule_files"]


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = SERVICES["grafana"]
    provisioning = bind_source("grafana", "/etc/grafana/provisioning")
    assert provisioning == ROOT / "deploy" / "grafana" / "provisioning" and provisioning.is_dir()
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    listen = flag(SERVICES["prometheus"]["command"], "--web.listen-address")
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{listen.rpartition(':')[2]}"
    for file in sorted((provisioning / "dashboards").glob("*.yml")):
        for provider in yaml.safe_load(file.read_text())["providers"]:
            folder = bind_source("grafana", provider["options"]["path"])
            assert folder is not None and sorted(folder.glob("*.json")), provider
    home = bind_source("grafana", grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()
    assert "prometheus" in grafana["depends_on"]

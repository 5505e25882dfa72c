"""docker-compose.yml cannot run here (no Docker engine): parse it and check what it runs exists."""

from __future__ import annotations

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

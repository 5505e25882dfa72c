"""Shared fixtures: a simulated store, built once per test session on the demo's own code path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.commands.demo import DemoResult, run_demo


@pytest.fixture(scope="session")
def simulated_store(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """A store holding a simulated day (3,000 events, rotations, attacks); do not write to it."""
    db = tmp_path_factory.mktemp("store") / "simulated.duckdb"
    return run_demo(Console(file=io.StringIO(), width=120), db=db, seed=11, events=3_000, hours=24.0)


@pytest.fixture(scope="session")
def simulated_db(simulated_store: DemoResult) -> Path:
    """The path of the simulated store (read it with `pipeline.io.store_readers.connect_readonly`)."""
    return simulated_store.db

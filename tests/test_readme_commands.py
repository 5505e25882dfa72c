"""Issue 18: the README's command blocks work as written after `make demo`, in a fresh directory.

Every line of a ```sh block that runs jwtriage is run (as `python -m pipeline.cli`, which is
what `.venv/bin/jwtriage` runs) after `jwtriage demo`, except the long-running or production
ones in `SKIP`, each with its reason. `pbpaste` (the clipboard) is fed a sampled token.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.simulator import simulate

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: Commands not run here, and why (matched as a substring of the command line).
SKIP = {
    "jwtriage consume": "reads Kafka until stopped (tests/test_consume_kafka.py runs it against a broker)",
    "jwtriage dashboard": "a web server that runs until stopped (tests/test_dashboard*.py open the app)",
    "jwtriage jwks-watch": "polls the issuers' jwks_uri over the network until stopped",
    "--db jwtriage.duckdb": "the production store, which `consume` fills from Kafka",
}


def readme_commands() -> list[str]:
    """The jwtriage command lines of the README's sh blocks (continuation lines joined)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if re.match(r"^(pbpaste \| )?(\.venv/bin/)?jwtriage ", line):
                commands.append(line)
    return commands


def _shell(command: str) -> str:
    python = shlex.quote(sys.executable) + " -m pipeline.cli"
    return re.sub(r"(\.venv/bin/)?jwtriage ", python + " ", command).replace(
        "pbpaste |", 'printf "%s" "$TOKEN" |'
    )


@pytest.fixture(scope="module")
def after_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    cwd = tmp_path_factory.mktemp("fresh-clone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTRIAGE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "100"
    token = json.loads(simulate(seed=7, events=200).samples[0].value)["token"]
    env["TOKEN"] = token
    demo = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert demo.returncode == 0, demo.stderr
    assert (cwd / "jwtriage-demo.toml").is_file() and not (cwd / "jwtriage.toml").exists()
    return cwd, env


def test_the_readme_names_the_on_call_commands() -> None:
    commands = readme_commands()
    for name in ("explain", "triage", "report", "sql", "dashboard"):
        assert any(f"jwtriage {name} " in c and "jwtriage-demo.duckdb" in c for c in commands), name


@pytest.mark.parametrize("command", readme_commands())
def test_each_readme_command_exits_0_after_the_demo(command: str, after_demo: tuple[Path, dict[str, str]]) -> None:
    skipped = [reason for key, reason in SKIP.items() if key in command]
    if skipped:  # not a pytest skip: the list above says why, and the command must still be one we know
        assert command.split()[0] in ("pbpaste", ".venv/bin/jwtriage", "jwtriage")
        return
    cwd, env = after_demo
    shell = ["bash", "-c", _shell(command)]
    done = subprocess.run(shell, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


def test_each_make_recipe_that_runs_jwtriage_parses() -> None:
    """`make dashboard` once passed a stray argument and failed at once: every recipe's jwtriage line parses."""
    from pipeline.cli import build_parser

    recipes = re.findall(r"^\t\$\(BIN\)/jwtriage (.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert any(r.startswith("demo") for r in recipes) and any(r.startswith("dashboard") for r in recipes)
    for recipe in recipes:
        try:
            build_parser().parse_args(shlex.split(recipe))
        except SystemExit as exit:
            raise AssertionError(f"make's `jwtriage {recipe}` does not parse (exit {exit.code})") from None

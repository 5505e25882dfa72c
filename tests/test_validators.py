"""The real-validators harness (validators/): real JWT libraries' messages against jwtriage's verdicts.

The harness test runs every runner (about 10 s once built; `make validators-build` builds them,
and `make test` does so first); it is skipped where the runners are not built. The fixture
test checks the committed record of real messages, with no toolchain at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.models import Attack, Cause
from validators.corpus import CorpusBuilder, Keys
from validators.runners import runner_specs

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "validators" / "messages.json"

#: Failing tokens these libraries accept, as configured by their runners (see validators/README.md).
KNOWN_ACCEPTED = {
    ("jose", "iat_in_future"),
    ("jsonwebtoken", "iat_in_future"),
    ("golang-jwt", "iat_in_future"),
    ("nimbus", "iat_in_future"),
    ("jsonwebtoken", "missing_exp"),  # jsonwebtoken has no required-claims option
    ("jsonwebtoken", "crit_unknown_extension"),
    ("golang-jwt", "crit_unknown_extension"),
}


def _case_names() -> list[str]:
    return [case.name for case in CorpusBuilder(Keys.generate(), "iss", "aud", 0).build()]


@pytest.mark.validators
def test_every_runner_answers_every_case(tmp_path: Path) -> None:
    missing = [str(spec.built.relative_to(REPO)) for spec in runner_specs() if not spec.built.exists()]
    if missing:
        pytest.skip(f"validator runners not built ({', '.join(missing)}): make validators-build")
    done = subprocess.run(
        [sys.executable, "-m", "validators.harness", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("\n\n")[1]
    assert table.splitlines()[0].split()[:3] == ["library", "failing", "rejected"]
    runners = [spec.name for spec in runner_specs()]
    assert [line.split()[0] for line in table.splitlines()[2:]] == runners

    observations = json.loads((tmp_path / "messages.json").read_text())["observations"]
    cases = _case_names()
    for runner in runners:
        answered = [seen["case"] for seen in observations if seen["runner"] == runner]
        assert answered == cases, runner
    accepted = {(seen["runner"], seen["case"]) for seen in observations
                if seen["intent"] != "valid" and seen["reply"]["accepted"]}
    assert accepted == KNOWN_ACCEPTED
    for seen in observations:
        if not seen["reply"]["accepted"]:
            assert seen["reply"]["logged"], (seen["runner"], seen["case"])
            assert seen["reported"]["confidence"] == "reported"
        assert seen["verified"]["confidence"] in {"verified", "inferred"}


def test_fixture_holds_a_real_message_for_every_rejection() -> None:
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    libraries = {info["library"]: info["version"] for info in fixture["libraries"].values()}
    assert set(libraries) == {"pyjwt", "jose", "jsonwebtoken", "golang-jwt", "nimbus-jose-jwt"}
    assert all(libraries.values())
    cases = set(_case_names())
    seen = set()
    for record in fixture["messages"]:
        assert record["version"] == libraries[record["library"]]
        assert record["case"] in cases
        assert Cause(record["cause"]) and Cause(record["intent"])
        assert all(Attack(attack) for attack in record["attacks"])
        assert record["message"] and record["logged"]
        seen.add((record["library"], record["case"]))
    accepted = {(record["library"], record["case"]) for record in fixture["accepted_failing"]}
    for library in libraries:
        for case in cases - {"valid_rs256", "valid_es256", "valid_rotated_key", "valid_after_retirement"}:
            assert (library, case) in seen or (library, case) in accepted, (library, case)

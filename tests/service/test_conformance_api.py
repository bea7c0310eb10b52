"""The conformance corpus end to end through boto3 against a running `statewright serve` on
Postgres: the same pass rate as `statewright run` (Service API issue)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT.parent / "shared" / "conformance" / "run.py"


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not RUNNER.exists(), reason="the conformance corpus is not beside this checkout"
)
def test_conformance_through_the_aws_api_matches_the_engine() -> None:
    def run(entry: str) -> tuple[int, int]:
        completed = subprocess.run(
            [sys.executable, str(RUNNER), "--python", entry, "--timeout", "90"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        match = re.search(r"conformance: (\d+)/(\d+) passed", completed.stdout)
        assert match, completed.stdout[-3000:] + completed.stderr[-3000:]
        return int(match.group(1)), int(match.group(2))

    through_api = run("tests.conformance_api:run_case")
    in_process = run("statemachine.conformance:run_case")
    assert through_api[1] >= 600
    assert through_api == in_process, f"through the API {through_api}, in process {in_process}"

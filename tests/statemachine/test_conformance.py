"""The recorded AWS corpus (../shared/conformance) through the in-process entry point.

The issue's floor: at least 98% of the JSONPath cases pass and 85% of event sequences match.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT.parent / "shared" / "conformance" / "run.py"


@pytest.mark.skipif(
    not RUNNER.exists(), reason="the conformance corpus is not beside this checkout"
)
def test_conformance_floor() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            "--python",
            "statemachine.conformance:run_case",
            "--feature",
            "!JSONata",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    match = re.search(
        r"conformance: (\d+)/(\d+) passed .*?, (\d+)/\d+ event sequences matched", completed.stdout
    )
    assert match, completed.stdout[-2000:]
    passed, total, events = (int(g) for g in match.groups())
    assert total >= 500
    assert passed / total >= 0.98, completed.stdout[-4000:]
    assert events / total >= 0.85, completed.stdout[-4000:]

"""The recorded AWS corpus (../shared/conformance) through the in-process entry point.

Floors from the issues: JSONPath cases ≥ 98% passed and ≥ 85% event sequences matched (Engine);
all cases ≥ 97% and every group ≥ 90% (Engine II).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT.parent / "shared" / "conformance" / "run.py"
SUMMARY = re.compile(r"conformance: (\d+)/(\d+) passed .*?, (\d+)/\d+ event sequences matched")
GROUP = re.compile(r"^(\S+)\s+(\d+)/(\d+)\s+[\d.]+%", re.MULTILINE)

pytestmark = pytest.mark.skipif(
    not RUNNER.exists(), reason="the conformance corpus is not beside this checkout"
)


def _run(*extra: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(RUNNER), "--python", "statemachine.conformance:run_case", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return completed.stdout


def test_jsonpath_cases_floor() -> None:
    out = _run("--feature", "!JSONata")
    match = SUMMARY.search(out)
    assert match, out[-2000:]
    passed, total, events = (int(g) for g in match.groups())
    assert total >= 500
    assert passed / total >= 0.98, out[-4000:]
    assert events / total >= 0.85, out[-4000:]


def test_all_cases_and_every_group_floor() -> None:
    out = _run()
    match = SUMMARY.search(out)
    assert match, out[-2000:]
    passed, total, _ = (int(g) for g in match.groups())
    assert total >= 600
    assert passed / total >= 0.97, out[-4000:]
    groups = {name: (int(p), int(t)) for name, p, t in GROUP.findall(out)}
    assert len(groups) >= 15, out[-4000:]
    low = {name: f"{p}/{t}" for name, (p, t) in groups.items() if p / t < 0.90}
    assert not low, low

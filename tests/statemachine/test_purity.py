"""The engine is pure: no service, database or network imports, and no hidden clock or randomness."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "statemachine"
FORBIDDEN_MODULES = [
    "sqlalchemy",
    "sqlmodel",
    "asyncpg",
    "fastapi",
    "httpx",
    "uvicorn",
    "alembic",
    "service",
    "asyncio",
]


def test_import_pulls_in_no_service_modules() -> None:
    code = (
        "import json, sys; import statemachine; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ENGINE.parent,
        timeout=60,
    )
    loaded = set(json.loads(out.stdout))
    assert "statemachine" in loaded
    assert sorted(loaded & set(FORBIDDEN_MODULES)) == []


# Calls that read the wall clock or an unseeded random source.
IMPURE = re.compile(
    r"datetime\.now\(|datetime\.utcnow\(|date\.today\(|\btime\.(time|monotonic|perf_counter|time_ns)\(|"
    r"uuid\.uuid[14]\(|os\.urandom\(|secrets\.|random\.(random|randint|choice|uniform|shuffle|seed|getrandbits)\("
)
IMPORTS = re.compile(r"^\s*(?:import|from)\s+(time|service|secrets|socket|asyncio)\b", re.MULTILINE)


def engine_files() -> list[Path]:
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 5
    return files


def test_no_wall_clock_or_unseeded_randomness() -> None:
    offenders = []
    for path in engine_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if IMPURE.search(line) and not (path.name == "local.py" and number == _utc_now_line()):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


def _utc_now_line() -> int:
    """The line number of local.py's injected default clock: the body of ``_utc_now``."""
    lines = (ENGINE / "local.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def _utc_now("))
    assert re.fullmatch(r"    return datetime\.now\((UTC|timezone\.utc)\)", lines[start + 1])
    return start + 2


def test_the_only_clock_is_run_local_injected_default() -> None:
    text = (ENGINE / "local.py").read_text()
    assert text.count("datetime.now(") == 1
    assert "clock: Callable[[], datetime] = _utc_now" in text
    assert _utc_now_line() > 1


def test_no_time_or_service_imports() -> None:
    offenders = [
        f"{path.name}: {match.group(0).strip()}"
        for path in engine_files()
        for match in IMPORTS.finditer(path.read_text())
    ]
    assert offenders == []

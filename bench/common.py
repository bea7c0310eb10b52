"""Helpers the benchmark scripts share (run them as ``python bench/<name>.py``)."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

JSON = Any


def say(text: str = "") -> None:
    """Print at once (benchmarks run for minutes)."""
    print(text, flush=True)


def verdict(ok: bool) -> str:
    """How a goal is reported: honestly."""
    return "MET" if ok else "NOT MET"


def median(values: list[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def pass_chain(length: int) -> dict[str, JSON]:
    """``length`` Pass states, each with a path and an intrinsic."""
    states: dict[str, JSON] = {}
    for i in range(1, length + 1):
        state: dict[str, JSON] = {
            "Type": "Pass",
            "Parameters": {
                "step": i,
                "prev.$": "$.last.step",
                "n.$": "States.MathAdd($.last.n, 1)",
            },
            "ResultPath": "$.last",
        }
        state.update({"Next": f"Step{i + 1}"} if i < length else {"End": True})
        states[f"Step{i}"] = state
    return {"StartAt": "Step1", "States": states}


def report_profile(
    path: Path, top: int = 12, indent: str = "    ", skip: tuple[str, ...] = ("asyncio", "<module>")
) -> None:
    """The functions most often on the stack (inclusive) and at its top (self), from a py-spy
    collapsed-stack file; frames containing any of ``skip`` are left out of the inclusive list."""
    if not path.exists():
        say(f"{indent}py-spy wrote no profile ({path})")
        return
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1] for f in stack.split(";")
        ]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    say(f"{indent}py-spy {path} ({total} samples); top inclusive, then top self:")
    ours = {k: v for k, v in inclusive.items() if not any(s in k for s in skip)}
    for frame, count in sorted(ours.items(), key=lambda kv: -kv[1])[:top]:
        say(f"{indent}  {100 * count / total:5.1f}%  {frame}")
    say(f"{indent}  --")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        say(f"{indent}  {100 * count / total:5.1f}%  {frame}")


@contextlib.contextmanager
def postgres(url: str | None, script: str, fsync: bool = False) -> Iterator[Any]:
    """The server to use: ``url``'s, or a throwaway cluster (tests/postgres.py), with disk
    flushes only when ``fsync``."""
    from tests import postgres as pgfix

    if url:
        yield pgfix.server_from_url(url)
        return
    durable = {"fsync": "on", "full_page_writes": "on"} if fsync else {}
    try:
        with mock.patch.dict(pgfix.SERVER_SETTINGS, durable), pgfix.throwaway_server() as server:
            yield server
    except BaseException as exc:  # tests/postgres.py skips (pytest's Skipped) when it can't
        if type(exc).__name__ in ("Skipped", "Failed"):
            raise SystemExit(f"{script}: cannot start Postgres: {exc}") from None
        raise


def notify_trigger(channel: str) -> str:
    """SQL for a benchmark database: NOTIFY ``channel`` with "name status version" whenever an
    execution row changes, so commit times can be read without polling the service."""
    return f"""
CREATE FUNCTION bench_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{channel}', NEW.name || ' ' || NEW.status || ' ' || NEW.version);
  RETURN NEW;
END $$;
CREATE TRIGGER bench_notify AFTER INSERT OR UPDATE OF version, status ON executions
  FOR EACH ROW EXECUTE FUNCTION bench_notify();
"""


def serve_app(app: Any, port: int) -> None:
    """Run an ASGI app on 127.0.0.1 with the uvicorn settings ``service/cli.py`` uses for
    Statewright (uvloop, httptools), so baselines and the service are served alike."""
    import uvicorn

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools"
    )

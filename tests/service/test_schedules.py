"""Schedules on the store (both backends), fired with an injected clock; and a real worker
process SIGKILLed mid-run and replaced: every fire time starts exactly one execution."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from service import control, schedules
from service.db.engine import create_engine
from tests.service.server import Server

ROOT = Path(__file__).resolve().parents[2]
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


@pytest.fixture
def seconds_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedules, "ALLOW_SECONDS", True)


async def _names(engine: Any, machine: str) -> list[str]:
    return sorted(e.name for e in await control.list_executions(engine, machine, None, None, 1000))


def test_a_fire_time_starts_one_execution_named_after_it(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(
            engine, "every-minute", "sm", "rate(1 minute)", input_value={"x": 1}
        )
        assert info.next_fire_at == info.anchor_at + timedelta(minutes=1)
        due = info.next_fire_at
        assert due is not None
        assert await schedules.fire_due(engine, now=due - timedelta(seconds=1)) == 0
        assert await schedules.fire_due(engine, now=due) == 1
        assert await schedules.fire_due(engine, now=due) == 0  # advanced with the start
        name = schedules.execution_name("every-minute", due)
        assert await _names(engine, "sm") == [name]
        execution = (await control.list_executions(engine, "sm", None, None, 10))[0]
        assert execution.input == {"x": 1}
        after = await schedules.describe_schedule(engine, "every-minute")
        assert after.next_fire_at == due + timedelta(minutes=1)
        assert after.last_fire_at == due
        assert after.last_execution_arn == control.execution_arn("sm", name)
        assert after.upcoming(3) == [due + timedelta(minutes=n) for n in (1, 2, 3)]
        await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.parametrize("catchup", ["once", "none"])
def test_a_missed_window_runs_once_or_not_at_all(database_url: str, catchup: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(
            engine, "s", "sm", "rate(5 minutes)", catchup=catchup
        )
        due = info.next_fire_at
        assert due is not None
        # Down for ten fire times, and back two minutes after the last of them.
        now = due + timedelta(minutes=47)
        assert await schedules.fire_due(engine, now=now) == 1
        assert await schedules.fire_due(engine, now=now) == 0
        latest = due + timedelta(minutes=45)
        expected = [schedules.execution_name("s", latest)] if catchup == "once" else []
        assert await _names(engine, "sm") == expected
        after = await schedules.describe_schedule(engine, "s")
        assert after.next_fire_at == due + timedelta(minutes=50)
        # On time again (within MISSED_AFTER): both modes run it.
        assert await schedules.fire_due(engine, now=after.next_fire_at + timedelta(seconds=5)) == 1
        assert schedules.execution_name("s", due + timedelta(minutes=50)) in await _names(
            engine, "sm"
        )
        await engine.dispose()

    asyncio.run(scenario())


def test_a_crash_inside_the_fire_transaction_leaves_nothing_and_the_retry_starts_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_start = control.start_execution_in

    async def start_then_die(*args: Any) -> Any:
        await real_start(*args)
        raise RuntimeError("the worker died after the start, before the commit")

    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(engine, "s", "sm", "rate(1 minute)")
        due = info.next_fire_at
        assert due is not None
        monkeypatch.setattr(control, "start_execution_in", start_then_die)
        with pytest.raises(RuntimeError):
            await schedules.fire_due(engine, now=due)
        assert await _names(engine, "sm") == []  # the start went with the rollback
        assert (await schedules.describe_schedule(engine, "s")).next_fire_at == due
        monkeypatch.setattr(control, "start_execution_in", real_start)
        assert await schedules.fire_due(engine, now=due) == 1
        assert await _names(engine, "sm") == [schedules.execution_name("s", due)]
        await engine.dispose()

    asyncio.run(scenario())


def test_a_fire_time_already_started_is_not_started_again(database_url: str) -> None:
    # Were a start ever to commit without its advance, the retry's start is AWS's idempotent
    # one (same name and input: the same execution; once closed: ExecutionAlreadyExists).
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(engine, "s", "sm", "rate(1 minute)")
        due = info.next_fire_at
        assert due is not None
        name = schedules.execution_name("s", due)
        first = await control.start_execution(engine, "sm", {}, name)
        assert await schedules.fire_due(engine, now=due) == 1
        assert [e.id for e in await control.list_executions(engine, "sm", None, None, 10)] == [
            first.id
        ]
        after = await schedules.describe_schedule(engine, "s")
        assert after.last_error is None and after.last_execution_arn == first.arn
        assert after.next_fire_at == due + timedelta(minutes=1)
        await engine.dispose()

    asyncio.run(scenario())


def test_paused_schedules_start_nothing_and_resume_from_now(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(engine, "s", "sm", "rate(1 minute)")
        due = info.next_fire_at
        assert due is not None
        paused = await schedules.update_schedule(engine, "s", state="DISABLED")
        assert paused.state == "DISABLED" and paused.upcoming(3) == []
        assert await schedules.fire_due(engine, now=due + timedelta(hours=1)) == 0
        resumed = await schedules.update_schedule(engine, "s", state="ENABLED")
        assert resumed.next_fire_at is not None and resumed.next_fire_at > resumed.updated_at
        assert await _names(engine, "sm") == []
        await engine.dispose()

    asyncio.run(scenario())


def test_bad_requests_are_refused_with_their_reason(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        cases: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"expression": "cron(0 12 * * * *)"}, control.ValidationException, "'?'"),
            ({"expression": "rate(5 seconds)"}, control.ValidationException, "STATEWRIGHT_"),
            ({"timezone": "Mars/Olympus"}, control.ValidationException, "Unknown time zone"),
            ({"machine": "nope"}, control.StateMachineDoesNotExist, "nope"),
            ({"name": "a b"}, control.ValidationException, "schedule name"),
            ({"catchup": "all"}, control.ValidationException, "once or none"),
        ]
        for case, error, text in cases:
            with pytest.raises(error, match=text):
                await schedules.create_schedule(
                    engine,
                    case.get("name", "s"),
                    case.get("machine", "sm"),
                    case.get("expression", "rate(1 hour)"),
                    timezone=case.get("timezone", "UTC"),
                    catchup=case.get("catchup", "once"),
                )
        await schedules.create_schedule(engine, "s", "sm", "rate(1 hour)")
        with pytest.raises(schedules.ScheduleAlreadyExists):
            await schedules.create_schedule(engine, "s", "sm", "rate(1 hour)")
        with pytest.raises(schedules.ScheduleDoesNotExist):
            await schedules.update_schedule(engine, "t", state="DISABLED")
        with pytest.raises(schedules.ScheduleDoesNotExist):
            await schedules.delete_schedule(engine, "t")
        await engine.dispose()

    asyncio.run(scenario())


def test_a_deleted_state_machine_is_reported_and_the_schedule_moves_on(
    database_url: str,
) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(engine, "s", "sm", "rate(1 minute)")
        await control.delete_state_machine(engine, "sm")
        assert info.next_fire_at is not None
        assert await schedules.fire_due(engine, now=info.next_fire_at) == 1
        after = await schedules.describe_schedule(engine, "s")
        assert after.last_error is not None and "StateMachineDoesNotExist" in after.last_error
        assert after.next_fire_at == info.next_fire_at + timedelta(minutes=1)
        await engine.dispose()

    asyncio.run(scenario())


def test_concurrent_claims_start_each_fire_time_once(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        infos = [
            await schedules.create_schedule(engine, f"s{i}", "sm", "rate(1 minute)")
            for i in range(6)
        ]
        now = max(i.next_fire_at for i in infos if i.next_fire_at is not None)
        engines = [create_engine(database_url) for _ in range(3)]
        await asyncio.gather(
            *(schedules.fire_due(e, now=now, limit=2) for e in engines for _ in range(3)),
            return_exceptions=True,
        )
        while await schedules.fire_due(engine, now=now):
            pass
        names = await _names(engine, "sm")
        assert len(names) == 6 and len(set(names)) == 6
        for e in engines:
            await e.dispose()
        await engine.dispose()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------- a real worker


def _worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "worker", "--database-url", url, "--lanes", "1"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_started(process: subprocess.Popen[bytes], log: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while log.read_text().count("worker started") < count:
        assert time.monotonic() < deadline and process.poll() is None, log.read_text()
        time.sleep(0.05)


def test_a_fast_schedule_across_a_sigkilled_worker_misses_and_doubles_nothing(
    database_url: str, tmp_path: Path, seconds_allowed: None
) -> None:
    # rate(2 seconds): a worker delayed by under two seconds (a busy machine) misses nothing.
    period = timedelta(seconds=2)
    log = tmp_path / "worker.log"

    async def create() -> schedules.ScheduleInfo:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS)
        info = await schedules.create_schedule(
            engine, "fast", "sm", "rate(2 seconds)", input_value={"k": "v"}
        )
        await engine.dispose()
        return info

    async def finish() -> tuple[list[control.ExecutionSummary], schedules.ScheduleInfo]:
        engine = create_engine(database_url)
        await schedules.update_schedule(engine, "fast", state="DISABLED")
        found = await control.list_executions(engine, "sm", None, None, 1000)
        info = await schedules.describe_schedule(engine, "fast")
        await engine.dispose()
        return found, info

    first = _worker(database_url, log)
    _wait_started(first, log, 1)
    info = asyncio.run(create())
    time.sleep(7.0)
    first.send_signal(signal.SIGKILL)  # mid-run: whatever it was doing is cut off
    first.wait(timeout=10)
    killed_at = datetime.now(info.anchor_at.tzinfo)
    time.sleep(5.0)  # two fire times pass with no worker
    second = _worker(database_url, log)
    try:
        _wait_started(second, log, 2)
        time.sleep(7.0)
        executions, after = asyncio.run(finish())
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
    assert after.last_error is None, log.read_text()
    anchor = info.anchor_at
    fire_times = {schedules.execution_name("fast", anchor + period * n): n for n in range(1, 60)}
    # Every execution is a fire time of the schedule, and no fire time has two.
    assert all(e.name in fire_times for e in executions), [e.name for e in executions]
    ticks = sorted(fire_times[e.name] for e in executions)
    assert len(set(ticks)) == len(ticks) == len({e.id for e in executions})
    # Every fire time while a worker ran has its execution, from the first one; the window
    # while none ran was run once, for its latest fire time (catchup: once).
    assert ticks[0] == 1, ticks
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b != a + 1]
    assert len(gaps) == 1, (ticks, log.read_text())
    before, caught_up = gaps[0]
    assert anchor + period * before <= killed_at < anchor + period * caught_up, (ticks, killed_at)
    assert ticks.index(caught_up) >= 3 and ticks[-1] - caught_up >= 2, (ticks, log.read_text())
    assert after.last_fire_at == anchor + period * ticks[-1]
    assert all(e.input == {"k": "v"} for e in executions)
    # None started before its fire time.
    early = [e.name for e in executions if e.started_at < anchor + period * fire_times[e.name]]
    assert early == []


# ---------------------------------------------------------------------------- the REST API


def test_the_schedules_api(api_server: Server) -> None:
    machine = f"sched-{uuid.uuid4().hex[:8]}"
    name = f"{machine}-s"
    with httpx.Client(
        base_url=f"{api_server.base_url}/api/v1", timeout=30, headers=api_server.headers
    ) as api:
        assert api.post("/state-machines", json={"name": machine, "definition": PASS})
        base = {"name": name, "state_machine": machine}
        for body, status, text in [
            ({"expression": "cron(0 12 * * * *)"}, 400, "exactly one of day-of-month"),
            ({"expression": "rate(1 hour)", "timezone": "Mars/Olympus"}, 400, "Unknown time"),
            ({"expression": "rate(1 hour)", "state_machine": "nope"}, 404, "nope"),
            ({"expression": "rate(1 hour)", "state": "PAUSED"}, 400, "ENABLED or DISABLED"),
        ]:
            answer = api.post("/schedules", json={**base, **body})
            assert answer.status_code == status and text in answer.json()["message"], answer.text
        created = api.post(
            "/schedules",
            json={
                **base,
                "expression": "cron(0 9 ? * MON-FRI *)",
                "timezone": "Europe/Berlin",
                "input": {"report": "daily"},
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["arn"].endswith(f":schedule/default/{name}")
        again = api.post("/schedules", json={**base, "expression": "rate(1 hour)"})
        assert again.status_code == 409
        described = api.get(f"/schedules/{name}", params={"upcoming": 6}).json()
        times = [datetime.fromisoformat(t) for t in described["next_fire_times"]]
        assert len(times) == 6 and times == sorted(times)
        berlin = ZoneInfo("Europe/Berlin")
        assert all(
            t.astimezone(berlin).hour == 9 and t.astimezone(berlin).weekday() < 5 for t in times
        )
        assert [
            s["name"] for s in api.get("/schedules", params={"state_machine": machine}).json()
        ] == [name]
        paused = api.post(f"/schedules/{name}/pause").json()
        assert paused["state"] == "DISABLED" and paused["next_fire_times"] == []
        resumed = api.post(f"/schedules/{name}/resume").json()
        assert resumed["state"] == "ENABLED" and len(resumed["next_fire_times"]) == 1
        bad = api.patch(f"/schedules/{name}", json={"expression": "rate(0 minutes)"})
        assert bad.status_code == 400
        # The server's own worker lanes fire it (rate in seconds: the tests' dev setting).
        fast = api.patch(f"/schedules/{name}", json={"expression": "rate(1 second)"})
        assert fast.status_code == 200, fast.text
        found = api_server.wait_for(
            lambda: (
                api.get(
                    "/executions", params={"state_machine": machine, "name_prefix": f"{name}-"}
                ).json()
                or None
            ),
            "an execution started by the schedule",
        )
        assert found[0]["input"] == {"report": "daily"}
        assert api.delete(f"/schedules/{name}").status_code == 204
        assert api.get(f"/schedules/{name}").status_code == 404
        assert api.delete(f"/schedules/{name}").status_code == 404

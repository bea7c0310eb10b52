"""The durable store and workers, on both backends: real Postgres and the embedded SQLite.

The same contract runs against each: migrations match the models; executions run by workers
end with the history run_local gives (modulo timestamps); appends are fenced; timers survive
workers; a broken history fails loudly without stopping the others.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from alembic import command
from service import control
from service.db import queries
from service.db.engine import create_engine
from service.db.migrate import alembic_config
from service.worker.loop import Worker
from statemachine import run_local
from statemachine.events import Event
from tests.postgres import CloneFactory

JSON = Any

PASS_CHAIN = {
    "StartAt": "S0",
    "States": {
        **{
            f"S{i}": {
                "Type": "Pass",
                "Parameters": {"step": i, "n.$": "$.n"},
                "ResultPath": f"$.s{i}",
                "Next": f"S{i + 1}",
            }
            for i in range(9)
        },
        "S9": {"Type": "Pass", "End": True},
    },
}
WAIT_MAP_PARALLEL = {
    "StartAt": "Wait",
    "States": {
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Fan"},
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "MaxConcurrency": 2,
            "ItemProcessor": {
                "StartAt": "Double",
                "States": {
                    "Double": {
                        "Type": "Pass",
                        "Parameters": {"v.$": "States.MathAdd($, $)"},
                        "End": True,
                    }
                },
            },
            "ResultPath": "$.doubled",
            "Next": "Both",
        },
        "Both": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": True}}},
                {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": 1, "End": True}}},
            ],
            "ResultPath": "$.branches",
            "End": True,
        },
    },
}


def _run(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro_factory())  # type: ignore[arg-type]


def _shape(events: list[Event]) -> list[tuple[Any, ...]]:
    """What must match between two runs of one execution (not timestamps, ARNs or seeds)."""
    return [
        (
            e.id,
            e.type,
            e.previous_event_id,
            e.scope,
            json.dumps(e.details, sort_keys=True, default=str),
        )
        for e in events
    ]


def _clean_details(events: list[Event]) -> list[Event]:
    # roleArn/stateMachineArn in ExecutionStarted differ between the service and run_local.
    return [
        e._replace(
            details={k: v for k, v in e.details.items() if k not in ("roleArn", "stateMachineArn")}
        )
        for e in events
    ]


async def _wait_done(
    engine: Any, ids: list[str], deadline: float
) -> list[control.ExecutionSummary]:
    while True:
        summaries = [await control.describe_execution(engine, i) for i in ids]
        if all(s.status != "RUNNING" for s in summaries) or time.monotonic() > deadline:
            return summaries
        await asyncio.sleep(0.05)


def test_migrations_match_the_models(database_url: str) -> None:
    # `alembic check` fails when the models need a migration that does not exist.
    command.check(alembic_config(database_url))


@pytest.mark.parametrize(
    "definition", [PASS_CHAIN, WAIT_MAP_PARALLEL], ids=["pass-chain", "wait-map-parallel"]
)
def test_executions_run_by_workers_match_run_local(
    database_url: str, definition: dict[str, JSON]
) -> None:
    inputs = [{"n": i, "items": list(range(i % 4))} for i in range(6)]

    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", definition)
        ids = [(await control.start_execution(engine, "sm", data)).id for data in inputs]
        workers = [Worker(database_url, lanes=2, poll_seconds=0.05) for _ in range(2)]
        running = [asyncio.create_task(w.run()) for w in workers]
        summaries = await _wait_done(engine, ids, time.monotonic() + 30)
        for w in workers:
            w.stop()
        await asyncio.gather(*running)
        for execution_id, data, summary in zip(ids, inputs, summaries, strict=True):
            expected = run_local(definition, data)
            assert summary.status == "SUCCEEDED"
            assert summary.output == expected.output
            history = await control.history(engine, execution_id)
            assert [e.id for e in history] == list(
                range(1, len(history) + 1)
            )  # gap- and duplicate-free
            assert _shape(_clean_details(history)) == _shape(_clean_details(expected.events))
            assert summary.events == len(history)
        await engine.dispose()

    _run(scenario)


def test_a_stale_append_is_refused(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS_CHAIN)
        execution_id = (await control.start_execution(engine, "sm", {"n": 1})).id
        other_id = (await control.start_execution(engine, "sm", {"n": 2})).id
        async with engine.begin() as conn:
            with pytest.raises(queries.StaleVersion, match=execution_id):
                await queries.finish_decisions(
                    conn, [queries.Decision(execution_id, 7, 8, "RUNNING")]
                )
        # In a batch, one stale execution refuses the whole batch (the transaction rolls back).
        with pytest.raises(queries.StaleVersion, match=execution_id):
            async with engine.begin() as conn:
                await queries.finish_decisions(
                    conn,
                    [
                        queries.Decision(other_id, 0, 1, "RUNNING"),
                        queries.Decision(execution_id, 7, 8, "RUNNING"),
                    ],
                )
        async with engine.begin() as conn:
            await queries.finish_decisions(
                conn,
                [
                    queries.Decision(other_id, 0, 0, "RUNNING"),
                    queries.Decision(execution_id, 0, 0, "RUNNING"),
                ],
            )
        # Two appends of the same event id: the (execution_id, seq) key lets only one through.
        event = Event(1, "ExecutionStarted", await _db_now(engine), 0, {"input": {}}, "", {})
        async with engine.begin() as conn:
            await queries.append_events(conn, execution_id, [event])
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await queries.append_events(conn, execution_id, [event])
        assert len(await control.history(engine, execution_id)) == 1
        await engine.dispose()

    _run(scenario)


async def _db_now(engine: Any) -> Any:
    async with engine.connect() as conn:
        return await queries.now(conn)


def test_a_timer_due_while_no_worker_runs_fires_when_one_is_back(database_url: str) -> None:
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}}

    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", definition)
        execution_id = (await control.start_execution(engine, "sm", {"k": 1})).id
        first = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(first.run())
        deadline = time.monotonic() + 10
        while (await control.describe_execution(engine, execution_id)).events < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        first.stop()
        await task
        assert (await control.describe_execution(engine, execution_id)).status == "RUNNING"
        await asyncio.sleep(1.2)  # the timer falls due while no worker runs
        second = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(second.run())
        (summary,) = await _wait_done(engine, [execution_id], time.monotonic() + 10)
        second.stop()
        await task
        assert summary.status == "SUCCEEDED"
        history = await control.history(engine, execution_id)
        assert [e.type for e in history] == [
            "ExecutionStarted",
            "WaitStateEntered",
            "WaitStateExited",
            "ExecutionSucceeded",
        ]
        assert history[2].timestamp - history[1].timestamp >= __import__("datetime").timedelta(
            seconds=1
        )
        async with engine.connect() as conn:
            left = (
                await conn.execute(sa.select(sa.func.count()).select_from(queries.timers))
            ).scalar_one()
        assert left == 0
        await engine.dispose()

    _run(scenario)


def test_a_broken_history_fails_that_execution_loudly_and_others_go_on(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(
            engine,
            "sm",
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}},
        )
        broken = (await control.start_execution(engine, "sm", {})).id
        healthy = (await control.start_execution(engine, "sm", {})).id
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 10
        while (await control.describe_execution(engine, broken)).events < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        worker.stop()
        await task
        async with engine.begin() as conn:  # an event type the engine has never heard of
            await conn.execute(
                queries.events.update()
                .where(queries.events.c.execution_id == broken, queries.events.c.seq == 2)
                .values(type="WaitStateEntered", scope="no-such-scope")
            )
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        done = await _wait_done(engine, [broken, healthy], time.monotonic() + 10)
        worker.stop()
        await task
        assert done[0].status == "FAILED"
        assert "could not process" in (done[0].cause or "")
        assert "unknown scope" in (done[0].cause or "")
        assert done[1].status == "SUCCEEDED"
        await engine.dispose()

    _run(scenario)


def test_stop_aborts_a_waiting_execution(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(
            engine,
            "sm",
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}},
        )
        execution_id = (await control.start_execution(engine, "sm", {})).id
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        deadline = time.monotonic() + 10
        while (await control.describe_execution(engine, execution_id)).events < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await control.stop_execution(engine, execution_id, "Operator.Stop", "no longer needed")
        (summary,) = await _wait_done(engine, [execution_id], time.monotonic() + 10)
        worker.stop()
        await task
        assert (summary.status, summary.error, summary.cause) == (
            "ABORTED",
            "Operator.Stop",
            "no longer needed",
        )
        assert (await control.history(engine, execution_id))[-1].type == "ExecutionAborted"
        await engine.dispose()

    _run(scenario)


def test_large_payloads_are_stored_once(database_url: str) -> None:
    big = {"blob": "x" * 20_000}
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}},
    }

    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", definition)
        execution_id = (await control.start_execution(engine, "sm", big)).id
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        (summary,) = await _wait_done(engine, [execution_id], time.monotonic() + 10)
        worker.stop()
        await task
        assert summary.output == big
        async with engine.connect() as conn:
            stored = (
                await conn.execute(sa.select(sa.func.count()).select_from(queries.payloads))
            ).scalar_one()
            sizes = (
                await conn.execute(sa.select(sa.func.max(sa.func.length(queries.events.c.details))))
            ).scalar_one()
        assert stored == 1  # input, five state inputs/outputs and the output: one copy
        assert sizes < 1_000
        await engine.dispose()

    _run(scenario)


def test_notify_wakes_an_idle_worker_without_polling(
    postgres_clone: CloneFactory, schema_template: str
) -> None:
    url = postgres_clone(schema_template)

    async def scenario() -> None:
        engine = create_engine(url)
        await control.create_state_machine(engine, "sm", PASS_CHAIN)
        # Poll only every 60 s: a quick start can only come from LISTEN/NOTIFY.
        worker = Worker(url, lanes=1, poll_seconds=60)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.listening.wait(), timeout=10)
        started = time.monotonic()
        execution_id = (await control.start_execution(engine, "sm", {"n": 1})).id
        (summary,) = await _wait_done(engine, [execution_id], time.monotonic() + 10)
        elapsed = time.monotonic() - started
        worker.stop()
        await task
        assert summary.status == "SUCCEEDED"
        assert elapsed < 5, f"took {elapsed:.2f} s: the worker was not woken by NOTIFY"
        await engine.dispose()

    _run(scenario)


def test_timers_due_together_fire_in_creation_order_like_run_local(database_url: str) -> None:
    # 60 iterations waiting 1 s each: their timers fall due together; ids like wait:87 and
    # wait:103 must not fire in text order.
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 0,
                "ItemProcessor": {
                    "StartAt": "W",
                    "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}},
                },
                "End": True,
            }
        },
    }
    data = {"items": list(range(60))}

    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", definition)
        execution_id = (await control.start_execution(engine, "sm", data)).id
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        (summary,) = await _wait_done(engine, [execution_id], time.monotonic() + 20)
        worker.stop()
        await task
        assert summary.status == "SUCCEEDED"
        history = await control.history(engine, execution_id)
        expected = [e for e in run_local(definition, data).events if not e.child]
        assert _shape(_clean_details(history)) == _shape(_clean_details(expected))
        await engine.dispose()

    _run(scenario)


def test_closed_express_executions_are_forgotten_after_the_retention(database_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        short = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
        await control.create_state_machine(engine, "fast", short, kind="EXPRESS")
        await control.create_state_machine(engine, "kept", short)
        worker = Worker(database_url, lanes=1, poll_seconds=0.05, express_retention_seconds=1.0)
        task = asyncio.create_task(worker.run())
        try:
            express = (await control.start_execution(engine, "fast", {"n": 1})).id
            standard = (await control.start_execution(engine, "kept", {"n": 2})).id
            done = await _wait_done(engine, [express, standard], time.monotonic() + 10)
            assert [s.status for s in done] == ["SUCCEEDED", "SUCCEEDED"]
            # Still there just after it closed, gone after the retention.
            assert len(await control.history(engine, express)) > 0
            deadline = time.monotonic() + 15
            while True:
                try:
                    await control.describe_execution(engine, express)
                except control.ExecutionDoesNotExist:
                    break
                assert time.monotonic() < deadline, "the EXPRESS execution was not forgotten"
                await asyncio.sleep(0.1)
            # A STANDARD execution closed at the same time stays, with its history.
            assert (await control.describe_execution(engine, standard)).status == "SUCCEEDED"
            assert len(await control.history(engine, standard)) == 4  # started, P, P, succeeded
            async with engine.connect() as conn:
                left = (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(queries.events)
                        .where(queries.events.c.execution_id == express)
                    )
                ).scalar_one()
            assert left == 0
        finally:
            worker.stop()
            await task
            await engine.dispose()

    _run(scenario)


def test_concurrent_starts_share_a_transaction_and_keep_their_own_answers(
    database_url: str,
) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "sm", PASS_CHAIN)

        async def attempt(machine: str, name: str | None, data: Any) -> Any:
            try:
                return await control.start_execution(engine, machine, data, name=name)
            except control.ServiceError as exc:
                return exc

        # Started together: they are committed in shared transactions (group commit), yet
        # each gets what it would get alone.
        results = await asyncio.gather(
            *(attempt("sm", None, {"n": i}) for i in range(40)),
            attempt("sm", "same", {"n": 1}),
            attempt("sm", "same", {"n": 1}),
            attempt("sm", "same", {"n": 2}),
            attempt("no-such-machine", None, {}),
        )
        fresh, same_a, same_b, other_input, missing = (
            results[:40],
            results[40],
            results[41],
            results[42],
            results[43],
        )
        assert all(isinstance(r, control.ExecutionSummary) for r in fresh)
        assert len({r.id for r in fresh}) == 40
        assert isinstance(same_a, control.ExecutionSummary)
        assert isinstance(same_b, control.ExecutionSummary) and same_b.id == same_a.id
        assert isinstance(other_input, control.ExecutionAlreadyExists)
        assert isinstance(missing, control.StateMachineDoesNotExist)
        for summary in fresh:
            described = await control.describe_execution(engine, summary.id)
            assert described.input == summary.input
        await engine.dispose()

    _run(scenario)


def test_purge_deletes_closed_executions_older_than_asked_and_nothing_else(
    database_url: str,
) -> None:
    short = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    waits = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}

    async def prepare() -> tuple[list[str], str, str]:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "short", short)
        await control.create_state_machine(engine, "waits", waits)
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        try:
            old = [(await control.start_execution(engine, "short", {"n": i})).id for i in range(3)]
            recent = (await control.start_execution(engine, "short", {"n": 9})).id
            running = (await control.start_execution(engine, "waits", {})).id
            done = await _wait_done(engine, [*old, recent], time.monotonic() + 10)
            assert {s.status for s in done} == {"SUCCEEDED"}
        finally:
            worker.stop()
            await task
        e = queries.executions
        async with engine.begin() as conn:
            long_ago = await _db_now(engine) - timedelta(days=40)
            await conn.execute(e.update().where(e.c.id.in_(old)).values(stopped_at=long_ago))
            # A running execution started long ago is not closed: never purged.
            await conn.execute(e.update().where(e.c.id == running).values(started_at=long_ago))
        await engine.dispose()
        return old, recent, running

    old, recent, running = _run(prepare)

    def purge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", "purge", "--database-url", database_url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = purge("--older-than", "30d", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would purge 3 execution(s)"), dry
    done = purge("--older-than", "30d", "--batch", "2")  # two batches
    assert done.returncode == 0 and done.stdout.startswith("purged 3 execution(s)"), done
    bad = purge("--older-than", "a month")
    assert bad.returncode == 2 and "30d, 12h, 45m, 90s" in bad.stderr

    async def check() -> None:
        engine = create_engine(database_url)
        for gone in old:
            with pytest.raises(control.ExecutionDoesNotExist):
                await control.describe_execution(engine, gone)
        async with engine.connect() as conn:
            left = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(queries.events)
                    .where(queries.events.c.execution_id.in_(old))
                )
            ).scalar_one()
        assert left == 0
        assert (await control.describe_execution(engine, recent)).status == "SUCCEEDED"
        assert len(await control.history(engine, recent)) == 4
        assert (await control.describe_execution(engine, running)).status == "RUNNING"
        await engine.dispose()

    _run(check)

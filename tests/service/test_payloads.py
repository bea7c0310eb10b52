"""Stored payloads and their owners: a purge deletes the payloads only purged executions used.

On both backends: exactly those payloads go, a payload shared with a live execution stays and
that execution runs to its end. On Postgres: a purge racing a store of the same payload for
a live execution (two connections, one transaction held open) never leaves a live reference
to a deleted payload, and neither the start nor the decision fails. Migration 0013's backfill
gives the references written before it their owners.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service import control
from service.db import queries
from service.db.engine import create_engine
from service.db.migrate import upgrade
from service.worker.loop import Worker
from tests.postgres import CloneFactory, TemplateFactory

JSON = Any

GROW = {
    "StartAt": "Grow",
    "States": {
        "Grow": {
            "Type": "Pass",
            "Parameters": {"big.$": "$.big", "more": "m" * 2000},
            "End": True,
        }
    },
}
PARK = {
    "StartAt": "Park",
    "States": {
        "Park": {
            "Type": "Task",
            "Resource": control.activity_arn("gc-act"),
            "Parameters": {"big.$": "$.big", "p": "p" * 1200},
            "ResultPath": "$.result",
            "End": True,
        }
    },
}


def big(letter: str) -> dict[str, JSON]:
    return {"big": letter * 3000}


def ref_of(value: JSON) -> str:
    ref, text = queries.payload_reference(value)
    assert text is not None, "not large enough to be stored"
    return ref[1:]


async def stored(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(sa.select(queries.payloads.c.sha256))).scalars())


async def referenced(conn: AsyncConnection) -> set[str]:
    """Every payload the remaining rows reference, read from the rows themselves."""
    e, o, ev = queries.executions, queries.outbox, queries.events
    refs = set((await conn.execute(sa.select(e.c.input_ref))).scalars())
    refs |= set((await conn.execute(sa.select(e.c.output_ref))).scalars())
    refs |= set((await conn.execute(sa.select(o.c.parameters_ref))).scalars())
    for details, meta in await conn.execute(sa.select(ev.c.details, ev.c.meta)):
        for part in (json.loads(details), json.loads(meta)):
            refs |= set(part.get("r", {}).values())
    return {ref[1:] for ref in refs if ref and ref.startswith("@")}


async def age(engine: AsyncEngine, ids: list[str], days: int = 40) -> Any:
    """Make closed executions look closed ``days`` ago; returns the time to purge before."""
    async with engine.begin() as conn:
        now = await queries.now(conn)
        e = queries.executions
        await conn.execute(
            e.update().where(e.c.id.in_(ids)).values(stopped_at=now - timedelta(days=days))
        )
    return now - timedelta(days=30)


async def wait_done(engine: AsyncEngine, ids: list[str], seconds: float = 15) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        summaries = [await control.describe_execution(engine, i) for i in ids]
        if all(s.status != "RUNNING" for s in summaries) or time.monotonic() > deadline:
            return summaries
        await asyncio.sleep(0.05)


async def wait_parked(engine: AsyncEngine, execution_id: str) -> None:
    deadline = time.monotonic() + 15
    while not any(
        e.type == "ActivityScheduled" for e in await control.history(engine, execution_id)
    ):
        assert time.monotonic() < deadline, "the task was never scheduled"
        await asyncio.sleep(0.05)


def test_purge_deletes_exactly_the_payloads_only_purged_executions_used(
    database_url: str,
) -> None:
    async def scenario() -> None:
        engine = create_engine(database_url)
        await control.create_state_machine(engine, "grow", GROW)
        await control.create_state_machine(engine, "park", PARK)
        await control.create_activity(engine, "gc-act")
        worker = Worker(database_url, lanes=1, poll_seconds=0.05)
        task = asyncio.create_task(worker.run())
        try:
            alone = (await control.start_execution(engine, "grow", big("a"))).id
            sharing = (await control.start_execution(engine, "grow", big("s"))).id
            stopped = (await control.start_execution(engine, "park", big("t"))).id
            live = (await control.start_execution(engine, "park", big("s"))).id
            done = await wait_done(engine, [alone, sharing])
            assert [s.status for s in done] == ["SUCCEEDED", "SUCCEEDED"]
            await wait_parked(engine, stopped)
            await wait_parked(engine, live)
            await control.stop_execution(engine, stopped)
            before = await age(engine, [alone, sharing, stopped])

            async with engine.connect() as conn:
                payloads_before = await stored(conn)
            # Inputs, Parameters and outputs of each; the input of "s" shared by two.
            grown = {n: {**big(n), "more": "m" * 2000} for n in "as"}
            parameters = {n: {**big(n), "p": "p" * 1200} for n in "ts"}
            expected = {ref_of(big(n)) for n in "ast"}
            expected |= {ref_of(v) for v in grown.values()}
            expected |= {ref_of(v) for v in parameters.values()}
            assert payloads_before == expected

            async with engine.begin() as conn:
                assert await queries.purge_closed(conn, kind=None, before=before) == 3
            async with engine.connect() as conn:
                payloads_after = await stored(conn)
                assert payloads_after == await referenced(conn)
            # What only the purged executions used went; the live one's input and Parameters stay.
            assert payloads_after == {ref_of(big("s")), ref_of(parameters["s"])}
            assert len(payloads_before) - len(payloads_after) == 5

            # The live execution still reads its input and runs to its end.
            assert (await control.describe_execution(engine, live)).input == big("s")
            taken = await control.get_activity_task(
                engine, control.activity_arn("gc-act"), "test", wait_seconds=5
            )
            assert taken is not None and taken[1] == parameters["s"]
            await control.send_task_success(engine, taken[0], {"ok": True})
            (summary,) = await wait_done(engine, [live])
            assert summary.status == "SUCCEEDED"
            assert summary.output == {**big("s"), "result": {"ok": True}}

            # Once it is purged too, nothing is left.
            before = await age(engine, [live])
            async with engine.begin() as conn:
                assert await queries.purge_closed(conn, kind=None, before=before) == 1
            async with engine.connect() as conn:
                assert await stored(conn) == set()
                left = sa.select(sa.func.count()).select_from(queries.payload_owners)
                assert (await conn.execute(left)).scalar_one() == 0
        finally:
            worker.stop()
            await task
            await engine.dispose()

    asyncio.run(scenario())


@pytest.fixture(params=["sqlite", "postgres"])
def url_at_0012(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0012")
        return url
    factory: TemplateFactory = request.getfixturevalue("postgres_template_factory")
    clone: CloneFactory = request.getfixturevalue("postgres_clone")
    return clone(factory("payloads_0012", lambda url: upgrade(url, "0012")))


def test_migration_0013_gives_earlier_references_their_owners(url_at_0012: str) -> None:
    # A database at 0012 with payloads referenced every way (written as that version wrote
    # them, without owners), upgraded: purging the closed executions deletes what only they
    # used.
    hashes = asyncio.run(_write_as_0012(url_at_0012))
    upgrade(url_at_0012)
    asyncio.run(_check_after_0013(url_at_0012, hashes))


def _payload(letter: str) -> tuple[str, str]:
    text = json.dumps({"x": letter * 2000}, separators=(",", ":"))
    return queries.payload_reference(json.loads(text))[0][1:], text


_NAMES = ("shared", "closed_input", "output", "parameters", "event", "meta", "live", "orphan")


async def _write_as_0012(url: str) -> dict[str, str]:
    shared, closed_input, output, parameters, event_field, meta_field, live_own, orphan = (
        _payload(letter) for letter in "abcdefgh"
    )
    engine = create_engine(url)
    async with engine.begin() as conn:
        at = await queries.now(conn)
        long_ago = at - timedelta(days=40)
        for sha, text in (
            shared,
            closed_input,
            output,
            parameters,
            event_field,
            meta_field,
            live_own,
            orphan,
        ):
            await conn.execute(
                queries.payloads.insert().values(sha256=sha, body=text, size=len(text))
            )
        sm = (
            await conn.execute(
                queries.state_machines.insert()
                .values(name="old", arn="arn:old", role_arn="", created_at=at, type="STANDARD")
                .returning(queries.state_machines.c.id)
            )
        ).scalar_one()
        version = (
            await conn.execute(
                queries.versions.insert()
                .values(
                    state_machine_id=sm,
                    version=1,
                    definition="{}",
                    definition_sha256="",
                    description="",
                    created_at=at,
                )
                .returning(queries.versions.c.id)
            )
        ).scalar_one()
        rows = {
            "closed": ("SUCCEEDED", closed_input[0], output[0], long_ago),
            "other": ("SUCCEEDED", shared[0], None, long_ago),
            "live": ("RUNNING", shared[0], None, None),
        }
        for name, (status, input_sha, output_sha, stopped_at) in rows.items():
            await conn.execute(
                sa.text(
                    "INSERT INTO executions (id, arn, name, state_machine_id, version_id, status,"
                    " input_ref, output_ref, started_at, stopped_at, seed, version,"
                    " redrive_count) VALUES (:id, :arn, :id, :sm, :version, :status, :input,"
                    " :output, :at, :stopped_at, 0, 1, 0)"
                ).bindparams(
                    sa.bindparam("at", type_=sa.DateTime(timezone=True)),
                    sa.bindparam("stopped_at", type_=sa.DateTime(timezone=True)),
                ),
                {
                    "id": name,
                    "arn": f"arn:{name}",
                    "sm": sm,
                    "version": version,
                    "status": status,
                    "input": "@" + input_sha,
                    "output": "@" + output_sha if output_sha else None,
                    "at": long_ago,
                    "stopped_at": stopped_at,
                },
            )
        events = [
            ("closed", {"v": {}, "r": {"input": "@" + event_field[0]}}, {"v": {}}),
            (
                "closed",
                {"v": {"note": '"r":{ in a value'}},
                {"v": {}, "r": {"x": "@" + meta_field[0]}},
            ),
            ("live", {"v": {}, "r": {"output": "@" + live_own[0]}}, {"v": {}}),
        ]
        for seq, (execution_id, details, meta) in enumerate(events, 1):
            await conn.execute(
                queries.events.insert().values(
                    execution_id=execution_id,
                    seq=seq,
                    type="PassStateExited",
                    timestamp=at,
                    previous_event_id=0,
                    scope="",
                    child="",
                    details=json.dumps(details, separators=(",", ":")),
                    meta=json.dumps(meta, separators=(",", ":")),
                )
            )
        for task_id, (execution_id, sha) in enumerate((("closed", parameters[0]),), 1):
            await conn.execute(
                queries.outbox.insert().values(
                    execution_id=execution_id,
                    task_id=task_id,
                    state_name="T",
                    resource="arn:task",
                    parameters_ref="@" + sha,
                    idempotency_key=f"{execution_id}:{task_id}",
                    status="DONE",
                    created_at=at,
                )
            )
    await engine.dispose()
    return dict(
        zip(
            _NAMES,
            (
                p[0]
                for p in (
                    shared,
                    closed_input,
                    output,
                    parameters,
                    event_field,
                    meta_field,
                    live_own,
                    orphan,
                )
            ),
            strict=True,
        )
    )


async def _check_after_0013(url: str, h: dict[str, str]) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            owners = {tuple(row) for row in await conn.execute(sa.select(queries.payload_owners))}
        assert owners == {
            (h["closed_input"], "closed"),
            (h["output"], "closed"),
            (h["parameters"], "closed"),
            (h["event"], "closed"),
            (h["meta"], "closed"),
            (h["shared"], "other"),
            (h["shared"], "live"),
            (h["live"], "live"),
        }
        async with engine.begin() as conn:
            before = await queries.now(conn) - timedelta(days=30)
            assert await queries.purge_closed(conn, kind=None, before=before) == 2
        async with engine.connect() as conn:
            # The live execution's payloads stay, and the orphan nothing references (no
            # owner: never collected).
            assert await stored(conn) == {h["shared"], h["live"], h["orphan"]}
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------- races (Postgres)

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


@pytest.fixture
def postgres_url(postgres_clone: CloneFactory, schema_template: str) -> str:
    return postgres_clone(schema_template)


async def closed_owner(engine: AsyncEngine, value: JSON) -> Any:
    """An execution that owns ``value``'s payload, closed long ago; the purge cut-off."""
    execution_id = (await control.start_execution(engine, "m", value)).id
    e = queries.executions
    async with engine.begin() as conn:
        await conn.execute(e.update().where(e.c.id == execution_id).values(status="SUCCEEDED"))
    return await age(engine, [execution_id])


async def lock_waiters(engine: AsyncEngine, count: int) -> None:
    """Until ``count`` sessions of the database wait for a lock."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while True:
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar_one() >= count:
                return
        assert time.monotonic() < deadline, f"{count} session(s) never waited for a lock"
        await asyncio.sleep(0.02)


async def store_for(engine: AsyncEngine, value: JSON, execution_id: str) -> str:
    """store_payload in a transaction of its own, as a decision does."""
    async with engine.begin() as conn:
        return await queries.store_payload(conn, value, execution_id)


async def reads(engine: AsyncEngine, ref: str) -> JSON:
    async with engine.connect() as conn:
        return (await queries.load_payloads(conn, [ref]))[ref]


def test_a_store_held_open_keeps_its_payload_from_a_purge(postgres_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(postgres_url)
        await control.create_state_machine(engine, "m", PASS)
        before = await closed_owner(engine, big("r"))
        live = (await control.start_execution(engine, "m", {"n": 1})).id
        async with engine.connect() as storing:
            await storing.begin()
            ref = await queries.store_payload(storing, big("r"), live)
            # The purge does not wait for the open store (it skips the payload it holds) ...
            async with engine.begin() as conn:
                purged = queries.purge_closed(conn, kind=None, before=before)
                assert await asyncio.wait_for(purged, 10) == 1
            await storing.commit()
        # ... and the payload stays, owned by the live execution, which reads it.
        assert await reads(engine, ref) == big("r")
        async with engine.connect() as conn:
            owners = await conn.execute(sa.select(queries.payload_owners))
            assert {tuple(row) for row in owners} == {(ref[1:], live)}
        await engine.dispose()

    asyncio.run(scenario())


async def stored_anew(
    engine: AsyncEngine,
    stored: asyncio.Task[str],
    started: asyncio.Task[control.ExecutionSummary],
    value: Any,
    live: str,
) -> None:
    """A decision's store of ``value`` for ``live`` and a start with it as input, both raced
    with a purge, finished: the payload is there, read back by both, owned by both."""
    ref = await asyncio.wait_for(stored, 10)
    summary = await asyncio.wait_for(started, 10)
    assert await reads(engine, ref) == value
    assert (await control.describe_execution(engine, summary.id)).input == value
    async with engine.connect() as conn:
        owners = {tuple(row) for row in await conn.execute(sa.select(queries.payload_owners))}
    assert owners == {(ref[1:], live), (ref[1:], summary.id)}


def test_a_store_and_a_start_wait_for_a_purge_held_open_and_store_anew(postgres_url: str) -> None:
    async def scenario() -> None:
        engine = create_engine(postgres_url)
        await control.create_state_machine(engine, "m", PASS)
        before = await closed_owner(engine, big("q"))
        live = (await control.start_execution(engine, "m", {"n": 1})).id
        async with engine.connect() as purging:
            await purging.begin()
            assert await queries.purge_closed(purging, kind=None, before=before) == 1
            # The payload is deleted, not yet committed: a decision storing it and a start
            # with it as input wait for the purge ...
            stored = asyncio.create_task(store_for(engine, big("q"), live))
            started = asyncio.create_task(control.start_execution(engine, "m", big("q")))
            await lock_waiters(engine, 2)
            assert not stored.done() and not started.done()
            await purging.commit()
        # ... then store it anew: both succeed and read it.
        await stored_anew(engine, stored, started, big("q"), live)
        await engine.dispose()

    asyncio.run(scenario())


def test_a_payload_deleted_between_a_store_finding_it_and_locking_it_is_stored_anew(
    postgres_url: str,
) -> None:
    # The narrowest window: the store's insert found the payload (a purge had locked it but
    # not deleted it yet), and the purge deletes it before the store's lock (a decision) or
    # its owner's foreign key check (a start) gets it. Neither fails: the decision's store
    # runs its statement again, the start its statement.
    async def scenario() -> None:
        engine = create_engine(postgres_url)
        await control.create_state_machine(engine, "m", PASS)
        await closed_owner(engine, big("w"))
        live = (await control.start_execution(engine, "m", {"n": 1})).id
        digest = ref_of(big("w"))
        p, o = queries.payloads, queries.payload_owners
        async with engine.connect() as purging:
            await purging.begin()
            await purging.execute(
                sa.select(p.c.sha256).where(p.c.sha256 == digest).with_for_update()
            )
            stored = asyncio.create_task(store_for(engine, big("w"), live))
            started = asyncio.create_task(control.start_execution(engine, "m", big("w")))
            await lock_waiters(engine, 2)
            await purging.execute(o.delete().where(o.c.sha256 == digest))
            await purging.execute(p.delete().where(p.c.sha256 == digest))
            await purging.commit()
        await stored_anew(engine, stored, started, big("w"), live)
        await engine.dispose()

    asyncio.run(scenario())


def test_concurrent_purges_of_executions_sharing_a_payload_delete_it(postgres_url: str) -> None:
    # Each purge sees the other's owner row, deleted but not committed: they take turns for
    # the payloads, so the second sees the first's delete and collects the payload.
    async def scenario() -> None:
        engine = create_engine(postgres_url)
        await control.create_state_machine(engine, "m", PASS)
        await closed_owner(engine, big("c"))
        before = await closed_owner(engine, big("c"))
        async with engine.connect() as first:
            await first.begin()
            assert await queries.purge_closed(first, kind=None, before=before, limit=1) == 1

            async def second() -> int:
                async with engine.begin() as conn:
                    return await queries.purge_closed(conn, kind=None, before=before, limit=1)

            purging = asyncio.create_task(second())
            await lock_waiters(engine, 1)
            async with engine.connect() as conn:
                assert await stored(conn) == {ref_of(big("c"))}
            await first.commit()
        assert await asyncio.wait_for(purging, 10) == 1
        async with engine.connect() as conn:
            assert await stored(conn) == set()
        await engine.dispose()

    asyncio.run(scenario())

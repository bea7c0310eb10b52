"""Answer tasks from an AWS Step Functions Local mock config, durably.

Executions started as ``<state machine ARN>#<test case>`` (Step Functions Local's convention)
have their tasks answered from the mock config file instead of being run: the n-th invocation
of a state (counted in the outbox, so a retry or a loop takes the next response, as in Step
Functions Local) gets the ``Return`` or ``Throw`` of its ``MockedResponses`` entry. The answer
and the closing of the outbox row are one transaction, like every runner's.

The file is read again when it changes, so a test harness can add test cases while the service
runs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.db import queries
from statemachine.local import MockConfigError, MockTasks, TaskError
from statemachine.resources import parse_resource

log = logging.getLogger("statewright.mock")
JSON = Any


class MockRunner:
    """Takes pending tasks of mock-configured executions and answers them."""

    def __init__(self, engine: AsyncEngine, path: str | os.PathLike[str]) -> None:
        self.engine = engine
        self.path = Path(path)
        self._loaded: tuple[float, JSON] | None = None

    def _config(self) -> JSON:
        mtime = self.path.stat().st_mtime
        if self._loaded is None or self._loaded[0] != mtime:
            self._loaded = (mtime, json.loads(self.path.read_text()))
        return self._loaded[1]

    async def run_one(self) -> bool:
        """Answer one pending mocked task; False when there is none."""
        o, e, sm = queries.outbox, queries.executions, queries.state_machines
        async with self.engine.begin() as conn:
            query = (
                sa.select(
                    o.c.id,
                    o.c.execution_id,
                    o.c.task_id,
                    o.c.state_name,
                    o.c.resource,
                    e.c.test_case,
                    sm.c.name,
                )
                .join(e, e.c.id == o.c.execution_id)
                .join(sm, sm.c.id == e.c.state_machine_id)
                .where(o.c.status == "PENDING", e.c.test_case.is_not(None))
                .order_by(o.c.id)
                .limit(1)
            )
            if queries.is_postgres(conn):
                query = query.with_for_update(of=o, skip_locked=True)
            row = (await conn.execute(query)).first()
            if row is None:
                return False
            outbox_id, execution_id, task_id, state_name, resource, test_case, machine = row
            # The invocation number: earlier tasks of the same state in this execution.
            invocation = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        o.c.execution_id == execution_id,
                        o.c.state_name == state_name,
                        o.c.task_id < task_id,
                    )
                )
            ).scalar_one()
            at = await queries.now(conn)
            try:
                result = MockTasks(self._config(), machine, test_case).respond(
                    state_name, resource, invocation
                )
                kind, body = "task_succeeded", {"task_id": task_id, "output": result}
            except TaskError as failure:
                kind, body = (
                    "task_failed",
                    {"task_id": task_id, "error": failure.error, "cause": failure.cause},
                )
            except (MockConfigError, OSError, ValueError) as exc:
                kind, body = (
                    "task_failed",
                    {
                        "task_id": task_id,
                        "error": "States.TaskFailed",
                        "cause": f"mock config: {exc}",
                    },
                )
            await conn.execute(o.update().where(o.c.id == outbox_id).values(status="DONE"))
            await queries.enqueue(conn, execution_id, "task_started", {"task_id": task_id}, at)
            if parse_resource(resource).pattern in ("sync", "callback"):
                await queries.enqueue(
                    conn, execution_id, "task_submitted", {"task_id": task_id}, at
                )
            await queries.enqueue(conn, execution_id, kind, body, at)
        return True

"""Overload: a burst of StartExecution far beyond what the server takes at once gets quick
429s with Retry-After (ThrottlingException, which boto3 retries by itself) instead of
timeouts or a queue without bound; every start that was accepted runs to the end, and no
execution is lost or made twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from service.db.migrate import upgrade
from tests.service.server import Server, running_server
from tests.service.test_webhooks import CHAIN, _client, _create_machine, wait_for

LIMITS = {"STATEWRIGHT_MAX_REQUESTS_IN_FLIGHT": "24", "STATEWRIGHT_START_QUEUE_LIMIT": "8"}


@pytest.fixture
def server(postgres_database: str, tmp_path: Path) -> Iterator[Server]:
    upgrade(postgres_database)
    with running_server(
        postgres_database, tmp_path / "server.log", backend="postgres", env=LIMITS
    ) as running:
        yield running


@contextlib.contextmanager
def starts_held(database_url: str) -> Iterator[None]:
    """While inside, no execution can be inserted: a SHARE lock on the executions table,
    held by a connection of the test's own, makes every start wait in the server's queue, so
    a burst overfills it however fast this machine is. Workers' claims (FOR UPDATE) still run."""
    locked = threading.Event()
    release = threading.Event()
    failure: list[BaseException] = []

    async def hold() -> None:
        conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=30)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE executions IN SHARE MODE")
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.02)
        finally:
            await conn.close()

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # surfaced below, not lost in the thread
            failure.append(exc)
            locked.set()

    holder = threading.Thread(target=run, daemon=True)
    holder.start()
    assert locked.wait(30), "the lock was not taken within 30 s"
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        release.set()
        holder.join(30)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _burst(server: Server, count: int, concurrency: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=server.headers, timeout=30, limits=limits
    ) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post(
                    "/api/v1/state-machines/burst/executions",
                    json={"input": {"i": i}, "name": f"b-{i}"},
                )

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def _executions(client: httpx.Client) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get(
        "/api/v1/executions", params={"state_machine": "burst", "limit": 1000}
    ).json()
    return listed


def test_a_burst_is_throttled_quickly_and_what_was_accepted_all_runs(server: Server) -> None:
    with _client(server) as client:
        _create_machine(client, "burst", CHAIN)
        rss_before = _rss_kib(server.process.pid)
        answers = asyncio.run(_burst(server, count=600, concurrency=120))
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {201, 429}, statuses  # no 5xx, no timeout (it would raise)
        assert statuses[429] > 0 and statuses[201] > 0, statuses
        throttled = next(a for a in answers if a.status_code == 429)
        assert throttled.headers["retry-after"] == "1"
        assert throttled.json()["code"] == "ThrottlingException"
        accepted = {a.json()["arn"] for a in answers if a.status_code == 201}
        assert len(accepted) == statuses[201]

        # The backlog drains: every accepted start runs to the end; nothing else exists.
        wait_for(
            lambda: (
                {e["status"] for e in _executions(client)} == {"SUCCEEDED"}
                and len(_executions(client)) == len(accepted)
            ),
            120,
            "the accepted executions to finish",
        )
        assert {e["arn"] for e in _executions(client)} == accepted
        grown_mib = (_rss_kib(server.process.pid) - rss_before) / 1024
        assert grown_mib < 150, f"the server grew by {grown_mib:.0f} MiB"
        print(f"\nburst of 600 with 120 at once: {dict(statuses)}; RSS +{grown_mib:.0f} MiB")


def test_boto3_gets_throttling_exception_and_its_retries_get_through(server: Server) -> None:
    with _client(server) as client:
        _create_machine(client, "burst", CHAIN)
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:burst"

    def sfn(attempts: int) -> Any:
        return boto3.client(
            "stepfunctions",
            endpoint_url=server.base_url,
            region_name="us-east-1",
            config=Config(
                retries={"mode": "standard", "max_attempts": attempts},
                max_pool_connections=60,
            ),
            **server.aws_credentials,
        )

    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def start(aws: Any, name: str) -> None:
        try:
            aws.start_execution(stateMachineArn=arn, name=name, input=json.dumps({}))
            outcome = "started"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        with lock:
            outcomes[outcome] += 1

    def burst(aws: Any, prefix: str, count: int) -> None:
        threads = [
            threading.Thread(target=start, args=(aws, f"{prefix}-{i}")) for i in range(count)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    # No retries: while starts are held, the queue fills and the rest are refused at once.
    with starts_held(server.database_url):
        once = threading.Thread(target=burst, args=(sfn(1), "once", 120))
        once.start()
        wait_for(lambda: outcomes["ThrottlingException"] > 0, 60, "a ThrottlingException")
    once.join(120)
    assert sum(outcomes.values()) == 120, outcomes
    assert set(outcomes) <= {"started", "ThrottlingException"}, outcomes
    assert outcomes["ThrottlingException"] > 0, outcomes
    outcomes.clear()
    burst(sfn(10), "retried", 120)  # boto3's own retries with back-off get every one in
    assert outcomes == Counter({"started": 120}), outcomes

"""Every sample workflow in definitions/ runs in a real `statewright dev` (which loads them and
serves the /demo endpoints they call) with its example input from definitions/examples/. The
container sample needs the container engine (the ``container_engine`` fixture starts it)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.service.server import ROOT, running_server

DEFINITIONS = ROOT / "definitions"
SAMPLES = sorted(p.stem for p in DEFINITIONS.glob("*.json"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, container_engine: str) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("dev")
    with running_server(
        f"sqlite:///{folder / 'dev.db'}", folder / "dev.log", backend="sqlite", command="dev"
    ) as server:
        yield server.base_url


def _input(name: str, base: str, **changes: Any) -> Any:
    data = json.loads((DEFINITIONS / "examples" / f"{name}.input.json").read_text())
    if "api" in data:
        data["api"] = base
    data.update(changes)
    return data


def _run(base: str, name: str, data: Any, timeout: float = 30) -> dict[str, Any]:
    with httpx.Client(base_url=f"{base}/api/v1", timeout=30) as client:
        started = client.post(f"/state-machines/{name}/executions", json={"input": data})
        assert started.status_code == 201, started.text
        execution = started.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            described: dict[str, Any] = client.get(f"/executions/{execution}").json()
            if described["status"] != "RUNNING":
                return described
            assert time.monotonic() < deadline, described
            time.sleep(0.1)


def test_every_sample_has_a_description_and_an_example_input() -> None:
    assert len(SAMPLES) >= 5
    for name in SAMPLES:
        definition = json.loads((DEFINITIONS / f"{name}.json").read_text())
        assert definition.get("Comment"), f"{name} has no one-line description"
        assert (DEFINITIONS / "examples" / f"{name}.input.json").exists(), name


def test_dev_loads_every_sample(dev: str) -> None:
    listed = {m["name"] for m in httpx.get(f"{dev}/api/v1/state-machines").json()}
    assert set(SAMPLES) <= listed


def test_hello_world(dev: str) -> None:
    done = _run(dev, "hello-world", _input("hello-world", dev))
    assert done["status"] == "SUCCEEDED"
    assert done["output"] == {"message": "Hello, Ada! Great to see you."}


def test_order_fulfilment_ships_refunds_and_declines(dev: str) -> None:
    done = _run(dev, "order-fulfilment", _input("order-fulfilment", dev))
    assert done["status"] == "SUCCEEDED", done
    assert [s["sku"] for s in done["output"]] == ["book", "lamp", "mug"]
    assert all(s["shipmentId"].startswith("sh_") for s in done["output"])
    stuck = _run(
        dev,
        "order-fulfilment",
        _input("order-fulfilment", dev, items=[{"sku": "book"}, {"sku": "OUT-OF-STOCK"}]),
    )
    assert (stuck["status"], stuck["error"]) == ("FAILED", "Order.ShippingFailed")
    assert "not in stock" in stuck["cause"]
    declined = _run(dev, "order-fulfilment", _input("order-fulfilment", dev, total=5000))
    assert (declined["status"], declined["error"]) == ("FAILED", "Order.PaymentFailed")
    assert "card declined" in declined["cause"]


def test_human_approval_waits_for_the_callback(dev: str) -> None:
    done = _run(dev, "human-approval", _input("human-approval", dev))
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["approvedBy"] == "auto-approver"
    assert done["output"]["expense"]["who"] == "Ada"


def test_fan_out_fan_in(dev: str) -> None:
    done = _run(dev, "fan-out-fan-in", _input("fan-out-fan-in", dev))
    assert done["status"] == "SUCCEEDED", done
    assert [r["load"] for r in done["output"]["perRegion"]] == [5, 4, 7, 4]
    assert done["output"]["summary"]["batches"] == [["north", "south"], ["east", "west"]]


def test_jsonata_transform(dev: str) -> None:
    done = _run(dev, "jsonata-transform", _input("jsonata-transform", dev))
    assert done["status"] == "SUCCEEDED", done
    assert done["output"] == {"summary": "ADA owes 328.50 EUR", "bulky": ["pen"], "lines": 3}


def test_container_job(dev: str) -> None:
    done = _run(dev, "container-job", _input("container-job", dev))
    assert done["status"] == "SUCCEEDED", done
    assert done["output"]["words"] == 9
    assert isinstance(done["output"]["seconds"], int | float)
    missing = _run(dev, "container-job", _input("container-job", dev, image="localhost/nope:1"))
    assert (missing["status"], missing["error"]) == ("FAILED", "Container.ImageNotFound")
    assert "localhost/nope:1" in missing["cause"]

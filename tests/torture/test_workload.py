"""The torture workload itself: its definitions are valid and reproducible, and the target
service answers what the run_local provider expects."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from statemachine import run_local
from statemachine.validate import validate
from tests.torture import workload


@pytest.mark.parametrize("seed", range(0, 400, 8))
def test_definitions_are_valid_and_reproducible(seed: int) -> None:
    definition = workload.definition(seed, "http://127.0.0.1:9")
    assert validate(definition) == []
    assert json.dumps(definition) == json.dumps(workload.definition(seed, "http://127.0.0.1:9"))


def test_definitions_mix_every_state_type_and_outcome() -> None:
    types: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    provider = workload.provider(2.0)
    for seed in range(60):
        definition = workload.definition(seed, "http://127.0.0.1:9")
        text = json.dumps(definition)
        for kind in ("Pass", "Choice", "Wait", "Parallel", "Map", "Task", "Succeed", "Fail"):
            types[kind] += f'"Type": "{kind}"' in text
        for i in range(3):
            result = run_local(definition, workload.execution_input(i), tasks=provider)
            outcomes[result.error or result.status] += 1
    assert all(types[kind] for kind in types), types
    for outcome in ("SUCCEEDED", "Torture.Failed", "States.Http.Socket"):
        assert outcomes[outcome], outcomes
    for behaviour in ("/ok", "/flaky/", "/status/", "/hang", "/reset"):
        assert any(behaviour in json.dumps(workload.definition(seed, "")) for seed in range(60)), (
            behaviour
        )
    assert any(key.startswith("States.Http.StatusCode.5") for key in outcomes), outcomes


def test_the_target_answers_what_the_provider_expects() -> None:
    target = workload.Target()
    try:
        with httpx.Client(timeout=2) as client:
            for path, body in [("ok", {"n": 3}), ("flaky/2", {"n": 1, "attempt": 1})]:
                response = client.post(f"{target.url}/{path}", json=body)
                assert response.text == workload.answer(f"/{path}", body).body
            with pytest.raises(httpx.ReadTimeout):
                client.post(f"{target.url}/hang", json={}, timeout=0.5)
            with pytest.raises(httpx.ReadError):
                client.post(f"{target.url}/reset", json={})
    finally:
        target.close()
    assert target.outcomes == Counter({"200": 1, "500": 1, "hang": 1, "reset": 1})

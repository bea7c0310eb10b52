"""`statewright plan` and `statewright apply` against the real server (``statewright serve``,
both backends) over its REST API with an API key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import cli
from tests.service.server import Server

JSON = Any


def _definition(result: str) -> dict[str, JSON]:
    return {
        "Comment": "made by test_apply",
        "StartAt": "Only",
        "States": {"Only": {"Type": "Pass", "Result": result, "End": True}},
    }


@pytest.fixture
def api(api_server: Server) -> Iterator[httpx.Client]:
    api_server.check_alive()
    with httpx.Client(
        base_url=f"{api_server.base_url}/api/v1", timeout=30, headers=api_server.headers
    ) as client:
        yield client


@pytest.fixture
def run(
    api_server: Server, capsys: pytest.CaptureFixture[str]
) -> Any:  # (command, folder, *flags) -> (exit code, stdout, stderr)
    owner = f"test-{uuid.uuid4().hex[:8]}"  # a shared server: prune only this test's

    def run(command: str, folder: Path, *flags: str) -> tuple[int, str, str]:
        code = cli.main(
            [
                command,
                str(folder),
                "--endpoint",
                api_server.base_url,
                "--api-key",
                f"{api_server.key_id}:{api_server.secret}",
                "--owner",
                owner,
                *flags,
            ]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _write(folder: Path, name: str, value: JSON, indent: int | None = 2) -> None:
    (folder / name).write_text(json.dumps(value, indent=indent))


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_apply_creates_then_is_a_no_op_and_versions_only_real_changes(
    tmp_path: Path, api: httpx.Client, run: Any
) -> None:
    a, b = _unique("orders"), _unique("billing")
    _write(tmp_path, f"{a}.asl.json", _definition("one"))
    _write(
        tmp_path,
        f"{a}.meta.json",
        {
            "description": "Takes orders",
            "tags": {"team": "shop"},
            "schedules": [{"expression": "cron(0 2 * * ? *)", "timezone": "Europe/Berlin"}],
        },
    )
    _write(tmp_path, f"{b}.json", _definition("bill"))

    code, out, _ = run("plan", tmp_path, "--detailed-exitcode")
    assert code == 3
    assert f"+ state machine {a}: create" in out and f"+ state machine {b}: create" in out
    assert f"+ schedule {a}: create (cron(0 2 * * ? *) Europe/Berlin -> {a})" in out
    assert "Plan: 3 to create, 0 to change, 0 to delete, 0 unchanged." in out
    assert api.get(f"/state-machines/{a}").status_code == 404  # plan changed nothing

    code, out, err = run("apply", tmp_path, "--yes")
    assert code == 0, err
    created = api.get(f"/state-machines/{a}").json()
    assert created["version"] == 1 and created["description"] == "Takes orders"
    assert created["tags"]["team"] == "shop" and "statewright:managed-by" in created["tags"]
    schedule = api.get(f"/schedules/{a}").json()
    assert schedule["expression"] == "cron(0 2 * * ? *)" and len(schedule["next_fire_times"]) == 5

    # Again: nothing to do; and a definition laid out differently is the same definition.
    _write(tmp_path, f"{b}.json", dict(reversed(_definition("bill").items())), indent=None)
    code, out, _ = run("plan", tmp_path, "--detailed-exitcode")
    assert code == 0, out
    assert "No changes: the server matches the folder." in out
    assert f"= state machine {b}: unchanged" in out
    code, out, _ = run("apply", tmp_path, "--yes")
    assert code == 0 and "No changes" in out
    assert api.get(f"/state-machines/{a}").json()["version"] == 1
    assert api.get(f"/state-machines/{b}").json()["version"] == 1

    # A real change: a diff in the plan, then exactly one new version.
    _write(tmp_path, f"{a}.asl.json", _definition("two"))
    code, out, _ = run("plan", tmp_path, "--detailed-exitcode")
    assert code == 3
    assert f"~ state machine {a}: update (definition (a new version))" in out
    assert f"    --- {a} (server, version 1)" in out
    assert '    -      "Result": "one",' in out and '    +      "Result": "two",' in out
    code, out, _ = run("apply", tmp_path, "--yes")
    assert code == 0 and f"updated state machine {a} (version 2)" in out
    code, _, _ = run("apply", tmp_path, "--yes")
    assert code == 0
    assert api.get(f"/state-machines/{a}").json()["version"] == 2
    assert api.get(f"/state-machines/{b}").json()["version"] == 1

    # Metadata alone changes no version; a schedule changes in place.
    _write(
        tmp_path,
        f"{a}.meta.json",
        {
            "description": "Takes all orders",
            "schedules": [{"expression": "rate(1 hour)", "input": {"batch": True}}],
        },
    )
    code, out, _ = run("apply", tmp_path, "--yes")
    assert code == 0, out
    assert f"~ state machine {a}: update (description, tags)" in out
    assert f"~ schedule {a}: update (expression, input, timezone)" in out
    after = api.get(f"/state-machines/{a}").json()
    assert after["version"] == 2 and after["description"] == "Takes all orders"
    assert "team" not in after["tags"]
    schedule = api.get(f"/schedules/{a}").json()
    assert (schedule["expression"], schedule["timezone"], schedule["input"]) == (
        "rate(1 hour)",
        "UTC",
        {"batch": True},
    )


def test_prune_removes_only_what_apply_made_and_the_folder_lost(
    tmp_path: Path, api: httpx.Client, run: Any
) -> None:
    keep, gone, manual = _unique("keep"), _unique("gone"), _unique("manual")
    assert api.post("/state-machines", json={"name": manual, "definition": _definition("m")})
    _write(tmp_path, f"{keep}.asl.json", _definition("k"))
    _write(tmp_path, f"{gone}.asl.json", _definition("g"))
    _write(
        tmp_path,
        f"{gone}.meta.json",
        {"schedules": [{"name": f"{gone}-hourly", "expression": "rate(1 hour)"}]},
    )
    assert run("apply", tmp_path, "--yes")[0] == 0
    assert api.get(f"/schedules/{gone}-hourly").status_code == 200

    (tmp_path / f"{gone}.asl.json").unlink()
    (tmp_path / f"{gone}.meta.json").unlink()
    code, out, _ = run("apply", tmp_path, "--yes")  # without --prune: left alone
    assert code == 0 and "No changes" in out
    assert api.get(f"/state-machines/{gone}").status_code == 200

    code, out, _ = run("plan", tmp_path, "--prune")
    assert code == 0
    assert f"- state machine {gone}: delete" in out
    assert f"- schedule {gone}-hourly: delete" in out
    assert manual not in out  # made by hand: not apply's to delete
    code, out, err = run("apply", tmp_path, "--prune", "--yes")
    assert code == 0, err
    assert api.get(f"/state-machines/{gone}").status_code == 404
    assert api.get(f"/schedules/{gone}-hourly").status_code == 404
    assert api.get(f"/state-machines/{keep}").status_code == 200
    assert api.get(f"/state-machines/{manual}").status_code == 200
    assert run("plan", tmp_path, "--prune", "--detailed-exitcode")[0] == 0


def test_invalid_files_stop_the_apply_before_anything_changes(
    tmp_path: Path, api: httpx.Client, run: Any
) -> None:
    fine, changed = _unique("fine"), _unique("changed")
    _write(tmp_path, f"{changed}.json", _definition("v1"))
    assert run("apply", tmp_path, "--yes")[0] == 0
    _write(tmp_path, f"{changed}.json", _definition("v2"))
    _write(tmp_path, f"{fine}.asl.json", _definition("f"))
    _write(
        tmp_path,
        f"{fine}.meta.json",
        {
            "colour": "red",
            "tags": {"statewright:managed-by": "me"},
            "schedules": [
                {"name": "a", "expression": "cron(0 12 * * * *)"},
                {"name": "b", "expression": "rate(1 hour)", "timezone": "Mars/Olympus"},
            ],
        },
    )
    broken = _definition("x")
    broken["States"]["Only"] = {"Type": "Pass", "Next": "Nowhere"}
    _write(tmp_path, "broken.asl.json", broken)
    (tmp_path / "garbled.json").write_text("{not json")
    (tmp_path / "orphan.meta.json").write_text("{}")

    for command in ("plan", "apply"):
        code, out, err = (
            run(command, tmp_path, "--yes") if command == "apply" else run(command, tmp_path)
        )
        assert code == 1, (out, err)
        assert out == ""
        meta = tmp_path / f"{fine}.meta.json"
        for expected in (
            f"{tmp_path / 'broken.asl.json'}:/States/Only/Next: ERROR MISSING_TRANSITION_TARGET",
            "Nowhere",
            f"{tmp_path / 'garbled.json'}:/: ERROR INVALID_JSON_DESCRIPTION",
            f"{meta}:/colour: unknown key",
            f"{meta}:/tags: keys starting with 'statewright:' are reserved",
            f"{meta}:/schedules/0/expression: Invalid cron expression 'cron(0 12 * * * *)'",
            f"{meta}:/schedules/1/timezone: Unknown time zone 'Mars/Olympus'",
            f"{tmp_path / 'orphan.meta.json'}: a sidecar without a definition",
            "nothing was changed",
        ):
            assert expected in err, (expected, err)
    assert api.get(f"/state-machines/{fine}").status_code == 404
    assert api.get(f"/state-machines/{changed}").json()["version"] == 1
    assert api.get("/schedules/a").status_code == 404


def test_conflicts_usage_and_authentication(
    tmp_path: Path, api: httpx.Client, api_server: Server, run: Any
) -> None:
    express = _unique("express")
    assert api.post("/state-machines", json={"name": express, "definition": _definition("e")})
    _write(tmp_path, f"{express}.json", _definition("e"))
    _write(tmp_path, f"{express}.meta.json", {"type": "EXPRESS"})
    code, _, err = run("apply", tmp_path, "--yes")
    assert code == 1 and "its type cannot change to EXPRESS" in err
    assert run("plan", tmp_path / "missing")[0] == 2
    (tmp_path / f"{express}.meta.json").unlink()
    _write(tmp_path, f"{express}.json", _definition("changed"))
    code, _, err = run("apply", tmp_path)  # not a terminal and no --yes
    assert code == 2 and "--yes" in err
    code = cli.main(
        ["plan", str(tmp_path), "--endpoint", api_server.base_url, "--api-key", "SWKnope:bad"]
    )
    assert code == 1
    assert api.get(f"/state-machines/{express}").json()["version"] == 1

"""Definitions as code: ``statewright plan DIR`` and ``statewright apply DIR``.

The folder holds one state machine per definition file, ``NAME.asl.json`` or ``NAME.json``
(top level only), each with an optional sidecar ``NAME.meta.json``::

    {"name": "orders",                 (default: the file name without .asl.json/.json)
     "type": "STANDARD",               (or EXPRESS; cannot change once created)
     "description": "Takes orders",
     "tags": {"team": "shop"},
     "schedules": [{"name": "orders-nightly", "expression": "cron(0 2 * * ? *)",
                    "timezone": "Europe/Berlin", "input": {"batch": true},
                    "catchup": "once", "state": "ENABLED", "description": "..."}]}

A sidecar rather than a key inside the definition: ASL stays exactly what AWS accepts. The
folder is the whole truth for what it names: a field left out of a sidecar means its default
(no description, no tags), except a schedule's ``state``, which apply sets only when given
(so that pausing a schedule by hand survives the next apply). A schedule's name defaults to
the state machine's when it is the only one.

Everything is read and validated first (definitions with the engine's validator, sidecars,
schedule expressions and time zones); any error stops the command before a request that
changes something. Then the plan compares with the server over the REST API: a definition
changes when it differs as JSON (keys sorted, layout ignored), not as text, so applying twice
is a no-op. What apply creates or updates carries the tag ``statewright:managed-by=OWNER``
(``--owner``, default ``apply``); ``--prune`` deletes only state machines and schedules with
that tag that the folder no longer has, never ones made by hand. A managed schedule of a state
machine in the folder is deleted when its sidecar no longer lists it, with or without --prune.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from service import control, schedules
from statemachine.validate import validate

JSON = Any
MANAGED_BY = "statewright:managed-by"
_META_KEYS = {"name", "type", "description", "tags", "schedules"}
_SCHEDULE_KEYS = {"name", "expression", "timezone", "input", "catchup", "state", "description"}
_SCHEDULE_DEFAULTS: dict[str, JSON] = {
    "timezone": "UTC",
    "input": {},
    "catchup": "once",
    "description": "",
}


class ApplyError(Exception):
    """The folder or the server is not as apply needs it; ``lines`` says every problem."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass
class Machine:
    """A state machine as the folder wants it."""

    name: str
    path: Path
    text: str
    definition: JSON
    type: str
    description: str
    tags: dict[str, str]
    schedules: list[dict[str, JSON]]


@dataclass
class Change:
    """One line of the plan: what happens to a state machine or a schedule."""

    action: str  # create, update, delete, unchanged
    kind: str  # state machine, schedule
    name: str
    summary: str = ""
    diff: list[str] = field(default_factory=list)
    request: tuple[str, str, JSON] | None = None  # method, path, body


def _definition_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.glob("*.json") if p.is_file() and not p.name.endswith(".meta.json")
    )


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".asl.json")] if name.endswith(".asl.json") else path.stem


def read_folder(folder: Path, owner: str) -> list[Machine]:
    """Every state machine the folder describes, all validated; ApplyError lists every
    problem in every file (``file:location: message``)."""
    problems: list[str] = []
    machines: list[Machine] = []
    files = _definition_files(folder)
    stems = {_stem(p) for p in files}
    for meta in sorted(folder.glob("*.meta.json")):
        if meta.name[: -len(".meta.json")] not in stems:
            problems.append(f"{meta}: a sidecar without a definition file beside it")
    for path in files:
        machine = _read_machine(path, owner, problems)
        if machine is not None:
            machines.append(machine)
    _check_unique(machines, problems)
    if problems:
        raise ApplyError(problems)
    return machines


def _read_machine(path: Path, owner: str, problems: list[str]) -> Machine | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return None
    errors = [d for d in validate(text) if d.severity == "ERROR"]
    problems.extend(f"{path}:{d.location}: ERROR {d.code} {d.message}" for d in errors)
    meta_path = path.with_name(f"{_stem(path)}.meta.json")
    meta: dict[str, JSON] = {}
    if meta_path.exists():
        try:
            loaded = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{meta_path}: not a readable JSON file: {exc}")
            return None
        if not isinstance(loaded, dict):
            problems.append(f"{meta_path}: must be a JSON object")
            return None
        meta = loaded
    before = len(problems)
    name = _check_meta(meta_path, meta, _stem(path), problems)
    if len(problems) > before or errors:
        return None
    tags = {**meta.get("tags", {}), MANAGED_BY: owner}
    schedule_list = [
        {
            **_SCHEDULE_DEFAULTS,
            **s,
            "name": s.get("name", name),
            "expression": s["expression"].strip(),
            "state_machine": name,
        }
        for s in meta.get("schedules", [])
    ]
    for schedule in schedule_list:
        schedule["tags"] = {MANAGED_BY: owner}
    return Machine(
        name=name,
        path=path,
        text=text,
        definition=json.loads(text),
        type=meta.get("type", "STANDARD"),
        description=meta.get("description", ""),
        tags=tags,
        schedules=schedule_list,
    )


def _check_meta(path: Path, meta: dict[str, JSON], stem: str, problems: list[str]) -> str:
    """Check a sidecar; returns the state machine's name."""

    def problem(where: str, message: str) -> None:
        problems.append(f"{path}:{where}: {message}")

    for key in sorted(set(meta) - _META_KEYS):
        problem(f"/{key}", f"unknown key (known: {', '.join(sorted(_META_KEYS))})")
    name = meta.get("name", stem)
    try:
        control.check_name(name, "state machine")
    except control.InvalidName as exc:
        problem("/name", str(exc))
    if meta.get("type", "STANDARD") not in ("STANDARD", "EXPRESS"):
        problem("/type", "must be STANDARD or EXPRESS")
    description = meta.get("description", "")
    if not isinstance(description, str) or len(description) > 256:
        problem("/description", "must be a string of at most 256 characters")
    tags = meta.get("tags", {})
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 128 and len(v) <= 256
        for k, v in tags.items()
    ):
        problem("/tags", "must map keys of 1-128 to values of 0-256 characters")
    elif any(k.startswith("statewright:") for k in tags):
        problem("/tags", "keys starting with 'statewright:' are reserved for apply")
    listed = meta.get("schedules", [])
    if not isinstance(listed, list):
        problem("/schedules", "must be a list")
        return str(name)
    for index, schedule in enumerate(listed):
        where = f"/schedules/{index}"
        if not isinstance(schedule, dict):
            problem(where, "must be an object")
            continue
        for key in sorted(set(schedule) - _SCHEDULE_KEYS):
            problem(f"{where}/{key}", f"unknown key (known: {', '.join(sorted(_SCHEDULE_KEYS))})")
        if "name" not in schedule and len(listed) > 1:
            problem(f"{where}/name", "required when a state machine has several schedules")
        _check_schedule(schedule, str(name), lambda w, m, where=where: problem(where + w, m))
    return str(name)


def _check_schedule(schedule: dict[str, JSON], default_name: str, problem: Any) -> None:
    name = schedule.get("name", default_name)
    if not isinstance(name, str) or not schedules.NAME.match(name):
        problem("/name", f"invalid schedule name {name!r}: 1-64 letters, digits, '.', '-' or '_'")
    expression = schedule.get("expression")
    timezone = schedule.get("timezone", "UTC")
    if not isinstance(expression, str):
        problem("/expression", "required: rate(...), cron(...) or at(...)")
    elif not isinstance(timezone, str):
        problem("/timezone", "must be an IANA time zone name")
    else:
        try:
            # Seconds are the server's dev setting: its answer decides.
            schedules.check(expression, timezone, allow_seconds=True)
        except control.ValidationException as exc:
            problem("/timezone" if "time zone" in str(exc) else "/expression", str(exc))
    if schedule.get("catchup", "once") not in schedules.CATCHUPS:
        problem("/catchup", "must be once or none")
    if "state" in schedule and schedule["state"] not in schedules.STATES:
        problem("/state", "must be ENABLED or DISABLED")
    if not isinstance(schedule.get("description", ""), str):
        problem("/description", "must be a string")


def _check_unique(machines: list[Machine], problems: list[str]) -> None:
    seen: dict[str, Path] = {}
    for machine in machines:
        if machine.name in seen:
            problems.append(
                f"{machine.path}: state machine '{machine.name}' is also defined by "
                f"{seen[machine.name]}"
            )
        seen[machine.name] = machine.path
    names: dict[str, Path] = {}
    for machine in machines:
        for schedule in machine.schedules:
            if schedule["name"] in names:
                problems.append(
                    f"{machine.path}: schedule '{schedule['name']}' is also defined by "
                    f"{names[schedule['name']]}"
                )
            names[schedule["name"]] = machine.path


# ---------------------------------------------------------------------------- the server


class Client:
    """The REST API of a Statewright server."""

    def __init__(self, endpoint: str, api_key: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.endpoint = endpoint.rstrip("/")
        self.http = httpx.Client(base_url=self.endpoint, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def request(self, method: str, path: str, body: JSON = None) -> JSON:
        """Send a request to /api/v1; ApplyError on a transport error or a non-2xx answer."""
        try:
            response = self.http.request(
                method, f"/api/v1{path}", json=body if body is not None else None
            )
        except httpx.HTTPError as exc:
            raise ApplyError([f"cannot reach {self.endpoint}: {exc}"]) from None
        if response.status_code >= 400:
            try:
                answer = response.json()
                message = f"{answer.get('code', '')}: {answer.get('message', answer)}"
                extra = [
                    f"  {d['location']}: {d['severity']} {d['code']} {d['message']}"
                    for d in answer.get("diagnostics", [])
                ]
            except (ValueError, AttributeError):
                message, extra = response.text[:500], []
            raise ApplyError(
                [f"{method} {path}: {response.status_code} {message}".rstrip(), *extra]
            )
        return response.json() if response.content else None


# ---------------------------------------------------------------------------- the plan


def _pretty(value: JSON) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _canonical(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan(
    client: Client, machines: list[Machine], owner: str, prune: bool
) -> tuple[list[Change], list[str]]:
    """What apply would do, in order; and the conflicts that stop it (e.g. a type change)."""
    on_server = {sm["name"]: sm for sm in client.request("GET", "/state-machines")}
    server_schedules = {s["name"]: s for s in client.request("GET", "/schedules")}
    changes: list[Change] = []
    conflicts: list[str] = []
    wanted = {m.name for m in machines}
    for machine in machines:
        changes.append(_machine_change(machine, on_server.get(machine.name), conflicts))
    wanted_schedules: set[str] = set()
    for machine in machines:
        for schedule in machine.schedules:
            wanted_schedules.add(schedule["name"])
            changes.append(_schedule_change(schedule, server_schedules.get(schedule["name"])))
    for name, found in sorted(server_schedules.items()):
        if name in wanted_schedules or found.get("tags", {}).get(MANAGED_BY) != owner:
            continue
        if found["state_machine"] in wanted or prune:
            changes.append(
                Change("delete", "schedule", name, request=("DELETE", f"/schedules/{name}", None))
            )
    if prune:
        for name, found in sorted(on_server.items()):
            if name not in wanted and found.get("tags", {}).get(MANAGED_BY) == owner:
                changes.append(
                    Change(
                        "delete",
                        "state machine",
                        name,
                        request=("DELETE", f"/state-machines/{name}", None),
                    )
                )
    return changes, conflicts


def _machine_change(machine: Machine, found: JSON, conflicts: list[str]) -> Change:
    body = {
        "definition": machine.text,
        "type": machine.type,
        "description": machine.description,
        "tags": machine.tags,
    }
    request = ("PUT", f"/state-machines/{machine.name}", body)
    if found is None:
        return Change("create", "state machine", machine.name, machine.type, request=request)
    if found.get("type", "STANDARD") != machine.type:
        conflicts.append(
            f"{machine.path}: state machine '{machine.name}' is {found['type']} on the server; "
            f"its type cannot change to {machine.type} (delete it first)"
        )
    what: list[str] = []
    diff: list[str] = []
    if _canonical(found["definition"]) != _canonical(machine.definition):
        what.append("definition (a new version)")
        diff = list(
            difflib.unified_diff(
                _pretty(found["definition"]),
                _pretty(machine.definition),
                f"{machine.name} (server, version {found['version']})",
                str(machine.path),
                lineterm="",
            )
        )
    for key, value in (("description", machine.description), ("tags", machine.tags)):
        if _canonical(found.get(key)) != _canonical(value):
            what.append(key)
            diff.append(f"{key}: {_canonical(found.get(key))} -> {_canonical(value)}")
    if not what:
        return Change("unchanged", "state machine", machine.name)
    return Change("update", "state machine", machine.name, ", ".join(what), diff, request)


def _schedule_change(schedule: dict[str, JSON], found: JSON) -> Change:
    name = schedule["name"]
    fields = {k: v for k, v in schedule.items() if k != "name"}
    summary = f"{schedule['expression']} {schedule['timezone']} -> {schedule['state_machine']}"
    if found is None:
        return Change("create", "schedule", name, summary, request=("POST", "/schedules", schedule))
    changed = sorted(k for k, v in fields.items() if _canonical(found.get(k)) != _canonical(v))
    if not changed:
        return Change("unchanged", "schedule", name)
    body = {k: fields[k] for k in changed}
    diff = [f"{k}: {_canonical(found.get(k))} -> {_canonical(fields[k])}" for k in changed]
    return Change(
        "update",
        "schedule",
        name,
        ", ".join(changed),
        diff,
        request=("PATCH", f"/schedules/{name}", body),
    )


_SIGNS = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}


def render(changes: list[Change]) -> list[str]:
    """The plan as text, one line per state machine and schedule, with diffs."""
    lines: list[str] = []
    for change in changes:
        head = f"{_SIGNS[change.action]} {change.kind} {change.name}: {change.action}"
        lines.append(head + (f" ({change.summary})" if change.summary else ""))
        lines.extend(f"    {line}" for line in change.diff)
    counts = {a: sum(1 for c in changes if c.action == a) for a in _SIGNS}
    if not pending(changes):
        lines.append("No changes: the server matches the folder.")
    else:
        lines.append(
            f"Plan: {counts['create']} to create, {counts['update']} to change, "
            f"{counts['delete']} to delete, {counts['unchanged']} unchanged."
        )
    return lines


def pending(changes: list[Change]) -> bool:
    """Whether the plan changes anything."""
    return any(c.action != "unchanged" for c in changes)


def execute(client: Client, changes: list[Change]) -> Iterator[str]:
    """Carry the plan out in its order (state machines before their schedules; deletions of
    schedules before those of their state machines), one line per change as it is made. A
    failing request stops it there (ApplyError): what was done stays done, and applying
    again finishes the rest."""
    for change in changes:
        if change.request is None:
            continue
        method, path, body = change.request
        answer = client.request(method, path, body)
        note = ""
        if method == "PUT" and isinstance(answer, dict) and answer.get("published"):
            note = f" (version {answer['version']})"
        yield f"{change.action}d {change.kind} {change.name}{note}"

"""The torture run's oracle: an execution's history and outcome against run_local's.

Without Parallel or Map a history must equal run_local's event for event (ids, types, details;
not timestamps or ARNs), as in tests/service/test_crash.py. With them, branches and iterations
run concurrently, so the order in which their events interleave (and so event ids, the
``previous_event_id`` links and the scope names, which hold event ids) depends on timing. Then
each frame's own sequence of events must equal run_local's: frames are named by their place
in the definition instead of by event ids, and a Map's iteration bookkeeping
(``MapIterationStarted``/``Succeeded``, whose order follows completion) is compared as a
multiset. Either way a duplicated or missing transition is a difference.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from statemachine import LocalResult
from statemachine.events import Event
from tests.service.test_store import _clean_details, _shape

JSON = Any
ITERATION_EVENTS = ("MapIterationStarted", "MapIterationSucceeded", "MapIterationFailed")
# How a reset connection reads depends on when the reset arrives ("ReadError: [Errno 104]
# Connection reset by peer", or ReadError without a message): one text for both, wherever it
# went (an error's cause, a Catch's ResultPath, outputs after it).
_RESET = re.compile(r"(/reset: )\w+: [^\"\\]*")


def _same_reset(value: JSON) -> JSON:
    text = json.dumps(value, default=str)
    return json.loads(_RESET.sub(r"\1<connection reset>", text)) if "/reset: " in text else value


def _normalized(history: list[Event]) -> list[Event]:
    return [e._replace(details=_same_reset(dict(e.details))) for e in history]


@dataclass
class Verdict:
    """What the oracle found for one execution."""

    problems: list[str] = field(default_factory=list)
    exact: bool = False  # equal event for event (else equal frame by frame)
    transitions: int = 0  # StateEntered events
    duplicated_transitions: int = 0  # StateEntered events beyond run_local's, per state


def _frames(history: list[Event]) -> dict[tuple[Any, ...], tuple[list[str], Counter[str]]]:
    """Per frame (named by its place): its events in order, and its iteration bookkeeping."""
    by_id = {event.id: event for event in history}
    ordinal: dict[int, int] = {}  # event id -> its position among its frame's ordered events
    seen: Counter[str] = Counter()
    for event in history:
        if event.type not in ITERATION_EVENTS:
            ordinal[event.id] = seen[event.scope]
            seen[event.scope] += 1
    names: dict[str, tuple[Any, ...]] = {"": ()}

    def place(scope: str) -> tuple[Any, ...]:
        if scope not in names:
            started, _, index = scope.rpartition(".")
            parent = by_id.get(int(started)) if started.isdigit() else None
            if parent is None:
                names[scope] = ("?", scope)
            else:
                names[scope] = (*place(parent.scope), ordinal.get(parent.id, -1), index)
        return names[scope]

    frames: dict[tuple[Any, ...], tuple[list[str], Counter[str]]] = defaultdict(
        lambda: ([], Counter())
    )
    for event in history:
        text = f"{event.type} {json.dumps(event.details, sort_keys=True, default=str)}"
        ordered, bookkeeping = frames[place(event.scope)]
        if event.type in ITERATION_EVENTS:
            bookkeeping[text] += 1
        else:
            ordered.append(text)
    return dict(frames)


def _entered(history: list[Event]) -> Counter[str]:
    # State names are unique across a generated definition, branches and iterations included.
    return Counter(
        str(event.details.get("name")) for event in history if event.type.endswith("StateEntered")
    )


def judge(
    status: str,
    output: JSON,
    error: str | None,
    cause: str | None,
    history: list[Event],
    expected: LocalResult,
) -> Verdict:
    """Compare one execution of the service with run_local's run of it."""
    verdict = Verdict()
    verdict.transitions = sum(1 for event in history if event.type.endswith("StateEntered"))
    got_entered, want_entered = _entered(history), _entered(expected.events)
    verdict.duplicated_transitions = sum(
        max(0, count - want_entered[key]) for key, count in got_entered.items()
    )
    if _same_reset([status, output, error, cause]) != _same_reset(
        [expected.status, expected.output, expected.error, expected.cause]
    ):
        verdict.problems.append(
            f"outcome {status} {error} {cause!r} output {output!r} != run_local "
            f"{expected.status} {expected.error} {expected.cause!r} output {expected.output!r}"
        )
    ids = [event.id for event in history]
    if ids != list(range(1, len(history) + 1)):
        verdict.problems.append(f"event ids are not 1..{len(history)}: {ids}")
    got = _normalized(_clean_details(history))
    want = _normalized(_clean_details(expected.events))
    if _shape(got) == _shape(want):
        verdict.exact = True
        return verdict
    got_frames, want_frames = _frames(got), _frames(want)
    if got_frames != want_frames:
        verdict.problems.append(f"history differs from run_local: {_difference(got, want)}")
    return verdict


def _difference(got: list[Event], want: list[Event]) -> str:
    got_frames, want_frames = _frames(got), _frames(want)
    for frame in sorted(set(got_frames) | set(want_frames), key=str):
        mine = got_frames.get(frame, ([], Counter()))
        theirs = want_frames.get(frame, ([], Counter()))
        if mine == theirs:
            continue
        for index, (a, b) in enumerate(zip(mine[0], theirs[0], strict=False)):
            if a != b:
                return f"frame {frame} event {index}: service {a[:300]} != run_local {b[:300]}"
        if len(mine[0]) != len(theirs[0]):
            return (
                f"frame {frame}: service {len(mine[0])} events, run_local {len(theirs[0])}; "
                f"extra: {(mine[0][len(theirs[0]) :] or theirs[0][len(mine[0]) :])[:3]}"
            )
        return f"frame {frame}: iterations {dict(mine[1])} != {dict(theirs[1])}"
    return f"{len(got)} events != {len(want)}"

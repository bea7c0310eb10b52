"""How data moves through a state, in each query language.

The interpreter decides *where* an execution goes (control flow, events, retries); this module
computes *what* flows: a state's task arguments, its output and the variables it assigns.

* JSONPath (States Language spec, "Input and Output Processing"): InputPath → Parameters →
  (task) → ResultSelector → ResultPath → OutputPath; ``Assign`` is a payload template.
* JSONata: Arguments → (task) → Output, with ``$states.input``, ``$states.result``,
  ``$states.errorOutput`` and ``$states.context``; ``Assign`` is evaluated like Output.

In both, every Assign and Output of a state sees the variables as they were when the state
was entered; the new values apply from the next state on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from statemachine import choice, paths, waits
from statemachine.definition import Catcher, State
from statemachine.errors import StatesFailure
from statemachine.expressions import Evaluator, QueryEvaluationError
from statemachine.payload import dumps

if TYPE_CHECKING:
    from statemachine.interpreter import Execution, Frame

JSON = Any
_NOTHING: Any = object()

# Outcome of a state's data processing: its output and the variables it assigns (or None).
Outcome = tuple[JSON, dict[str, JSON] | None]


def evaluator(
    ex: Execution, frame: Frame, result: JSON = _NOTHING, error_output: JSON = _NOTHING
) -> Evaluator:
    """A JSONata evaluator with ``$states`` for this frame's state."""
    states: dict[str, JSON] = {"input": frame.raw_input, "context": ex.context(frame)}
    if result is not _NOTHING:
        states["result"] = result
    if error_output is not _NOTHING:
        states["errorOutput"] = error_output
    return Evaluator(states, frame.variables, ex.rng())


def _jsonata_outcome(state: State, ev: Evaluator, default: JSON) -> Outcome:
    output = ev.field(state.raw["Output"], "Output") if "Output" in state.raw else default
    assigned = ev.field(state.assign, "Assign") if state.assign is not None else None
    return output, assigned


def _jsonpath_assign(ex: Execution, frame: Frame, data: JSON) -> dict[str, JSON] | None:
    if frame.state.assign is None:
        return None
    assigned: dict[str, JSON] = ex.template(frame, frame.state.assign, data)
    return assigned


# ---------------------------------------------------------------------------- JSONPath pieces


def _note(ex: Execution, key: str, value: JSON) -> JSON:
    """Record an intermediate value for TestState's inspection data (when tracing)."""
    if ex.trace is not None:
        ex.trace[key] = value
    return value


def effective_input(ex: Execution, frame: Frame) -> JSON:
    """The state input after InputPath (JSONata has no InputPath: the raw input)."""
    path = frame.state.input_path
    if frame.state.jsonata or path == "$":
        return frame.raw_input
    if path is None:
        return {}
    return ex.read(frame, path, frame.raw_input)


def _traced_input(ex: Execution, frame: Frame) -> JSON:
    return _note(ex, "afterInputPath", effective_input(ex, frame))


def parameters(ex: Execution, frame: Frame, effective: JSON) -> JSON:
    """Parameters (or ItemSelector) applied to the effective input."""
    if not frame.state.has_parameters:
        return effective
    return ex.template(frame, frame.state.parameters, effective)


def result_path(ex: Execution, frame: Frame, path: str | None, result: JSON) -> JSON:
    """Place ``result`` into the raw state input at ``path`` (ResultPath)."""
    if path is None:
        return frame.raw_input
    if path == "$":
        return result
    try:
        return paths.write(path, frame.raw_input, result)
    except paths.PathError:
        raise StatesFailure(
            "States.ResultPathMatchFailure",
            f'States.ResultPathMatchFailure: Unable to apply ResultPath "{path}" to input '
            f'"{dumps(frame.raw_input)}".',
        ) from None


def output_path(ex: Execution, frame: Frame, data: JSON) -> JSON:
    """OutputPath applied to ``data``."""
    path = frame.state.output_path
    if path is None:
        return {}
    if path == "$":
        return data
    return ex.read(frame, path, data)


# ---------------------------------------------------------------------------- per state type


def pass_state(ex: Execution, frame: Frame) -> Outcome:
    """A Pass state's output and assignments."""
    state = frame.state
    if state.jsonata:
        return _jsonata_outcome(state, evaluator(ex, frame), frame.raw_input)
    effective = _traced_input(ex, frame)
    if "Result" in state.raw:
        result = _note(ex, "result", state.raw["Result"])
    else:
        result = _note(ex, "afterParameters", parameters(ex, frame, effective))
    combined = _note(ex, "afterResultPath", result_path(ex, frame, state.result_path, result))
    return output_path(ex, frame, combined), _jsonpath_assign(ex, frame, result)


def passthrough(ex: Execution, frame: Frame) -> Outcome:
    """Output of a Wait or Succeed state (its input, shaped by OutputPath or Output)."""
    state = frame.state
    if state.jsonata:
        return _jsonata_outcome(state, evaluator(ex, frame), frame.raw_input)
    effective = _traced_input(ex, frame)
    return output_path(ex, frame, effective), _jsonpath_assign(ex, frame, effective)


def arguments(ex: Execution, frame: Frame) -> JSON:
    """What a Task sends to its resource, or a Parallel gives its branches."""
    state = frame.state
    if state.jsonata:
        if "Arguments" not in state.raw:
            return _note(ex, "afterArguments", frame.raw_input)
        evaluated = evaluator(ex, frame).field(state.raw["Arguments"], "Arguments")
        return _note(ex, "afterArguments", evaluated)
    return _note(ex, "afterParameters", parameters(ex, frame, _traced_input(ex, frame)))


def task_timeouts(ex: Execution, frame: Frame) -> tuple[float | None, float | None]:
    """A Task's TimeoutSeconds and HeartbeatSeconds (paths and expressions resolved)."""
    state = frame.state
    values: list[float | None] = []
    for key in ("TimeoutSeconds", "HeartbeatSeconds"):
        value = state.get(key)
        if state.jsonata and value is not None:
            value = evaluator(ex, frame).typed(value, key, "integer")
        elif state.get(f"{key}Path") is not None:
            value = ex.read(frame, state.get(f"{key}Path"), effective_input(ex, frame))
        values.append(value)
    return values[0], values[1]


def result_state(ex: Execution, frame: Frame, result: JSON) -> Outcome:
    """Output of a Task, Parallel or Map once its result is in."""
    state = frame.state
    _note(ex, "result", result)
    if state.jsonata:
        return _jsonata_outcome(state, evaluator(ex, frame, result=result), result)
    if state.has_result_selector:
        result = _note(ex, "afterResultSelector", ex.template(frame, state.result_selector, result))
    combined = _note(ex, "afterResultPath", result_path(ex, frame, state.result_path, result))
    return output_path(ex, frame, combined), _jsonpath_assign(ex, frame, result)


def caught(ex: Execution, frame: Frame, catcher: Catcher, error_output: JSON) -> Outcome:
    """Output of a state whose error a Catcher took (JSONPath: ResultPath of the error)."""
    if frame.state.jsonata:
        ev = evaluator(ex, frame, error_output=error_output)
        raw = catcher.raw
        output = ev.field(raw["Output"], "Output") if "Output" in raw else error_output
        assigned = ev.field(catcher.assign, "Assign") if catcher.assign is not None else None
        return output, assigned
    output = result_path(ex, frame, catcher.result_path, error_output)
    assigned = (
        ex.template(frame, catcher.assign, error_output) if catcher.assign is not None else None
    )
    return output, assigned


def choice_state(ex: Execution, frame: Frame) -> tuple[str | None, JSON, dict[str, JSON] | None]:
    """The Choice state's next state (None: no rule matched and no Default), output, assignments."""
    state = frame.state
    rules = state.get("Choices")
    if state.jsonata:
        ev = evaluator(ex, frame)
        for index, rule in enumerate(rules):
            if ev.typed(rule.get("Condition"), f"Choices/{index}/Condition", "boolean") is True:
                output = (
                    ev.field(rule["Output"], "Output")
                    if "Output" in rule
                    else _jsonata_outcome(state, ev, frame.raw_input)[0]
                )
                source = rule if "Assign" in rule else state.raw
                assigned = ev.field(source["Assign"], "Assign") if "Assign" in source else None
                return rule["Next"], output, assigned
        output, assigned = _jsonata_outcome(state, ev, frame.raw_input)
        return state.get("Default"), output, assigned
    effective = _traced_input(ex, frame)
    scope = ex.scope(frame, effective)
    choice_index = choice.choose(rules, scope)
    if choice_index is None:
        nxt = state.get("Default")
        assign_template = state.assign
    else:
        nxt = rules[choice_index]["Next"]
        assign_template = rules[choice_index].get("Assign", state.assign)
    assigned = (
        ex.template(frame, assign_template, effective) if assign_template is not None else None
    )
    return nxt, output_path(ex, frame, effective), assigned


def wait_fields(ex: Execution, frame: Frame) -> tuple[Mapping[str, JSON], JSON]:
    """The Wait state's timing fields (expressions evaluated) and the input its paths read."""
    state = frame.state
    if not state.jsonata:
        return state.raw, effective_input(ex, frame)
    ev = evaluator(ex, frame)
    fields: dict[str, JSON] = {}
    if "Seconds" in state.raw:
        seconds = ev.typed(state.raw["Seconds"], "Seconds", "integer")
        if isinstance(seconds, int | float) and seconds < 0:
            raise QueryEvaluationError(
                "Seconds", f"The Seconds field of a Wait state cannot be negative: {seconds}"
            )
        fields["Seconds"] = seconds
    if "Timestamp" in state.raw:
        fields["Timestamp"] = ev.typed(state.raw["Timestamp"], "Timestamp", "string")
    return fields, frame.raw_input


def fail_state(ex: Execution, frame: Frame) -> tuple[JSON, JSON]:
    """The Fail state's error and cause."""
    state = frame.state
    error, cause = state.get("Error"), state.get("Cause")
    if state.jsonata:
        ev = evaluator(ex, frame)
        if error is not None:
            error = ev.typed(error, "Error", "string")
        if cause is not None:
            cause = ev.typed(cause, "Cause", "string")
        return error, cause
    for key in ("ErrorPath", "CausePath"):
        path = state.get(key)
        if path is None:
            continue
        value = _fail_field(ex, frame, key, path)
        if key == "ErrorPath":
            error = value
        else:
            cause = value
    return error, cause


def _fail_field(ex: Execution, frame: Frame, key: str, path: str) -> str | None:
    if path.startswith("States."):
        value = ex.template(frame, {"v.$": path}, frame.raw_input)["v"]
    else:
        scope = ex.scope(frame, frame.raw_input)
        try:
            value = scope.resolve(path)
        except paths.PathError:
            raise StatesFailure(
                "States.Runtime",
                f"The JSONPath '{path}' specified for the field '{key}' could not be found "
                f"in the input '{scope.input_text(path)}'",
            ) from None
    if value is None:
        return None
    return value if isinstance(value, str) else dumps(value)


# ---------------------------------------------------------------------------- Map


def map_items(ex: Execution, frame: Frame) -> list[JSON]:
    """The items a Map iterates over (ItemsPath or Items)."""
    state = frame.state
    if state.jsonata:
        if "Items" in state.raw:
            items = evaluator(ex, frame).typed(state.raw["Items"], "Items", "array")
        else:
            items = frame.raw_input
        if not isinstance(items, list):
            raise QueryEvaluationError(
                "Items", f"Map state input must be an array but was: {dumps(items)}"
            )
        return items
    effective = effective_input(ex, frame)
    items_path = state.get("ItemsPath", "$")
    items = ex.read(frame, items_path, effective) if items_path != "$" else effective
    if not isinstance(items, list):
        raise StatesFailure(
            "States.Runtime",
            f"Map state input must be an array but was: {dumps(items)}",
        )
    return items


def map_settings(ex: Execution, frame: Frame) -> tuple[int, float | None, float | None]:
    """A Map's MaxConcurrency and tolerated failure count and percentage."""
    state = frame.state
    fields: Mapping[str, JSON] = state.raw
    if state.jsonata:
        ev = evaluator(ex, frame)
        kinds = {
            "MaxConcurrency": "integer",
            "ToleratedFailureCount": "integer",
            "ToleratedFailurePercentage": "number",
        }
        fields = {k: ev.typed(state.raw[k], k, kind) for k, kind in kinds.items() if k in state.raw}
    effective = effective_input(ex, frame)

    def read(path: str) -> JSON:
        return ex.read(frame, path, effective)

    count, percentage = waits.tolerance(fields, read)
    return waits.max_concurrency(fields, read), count, percentage


def item_input(ex: Execution, frame: Frame, index: int, item: JSON) -> JSON:
    """One iteration's input: the item, through ItemSelector (or legacy Parameters)."""
    state = frame.state
    if not state.has_parameters:
        return item
    extra = {"Map": {"Item": {"Index": index, "Value": item}}}
    if state.jsonata:
        ev = evaluator(ex, frame)
        ev.states["context"].update(extra)
        return ev.field(state.parameters, "ItemSelector")
    return ex.template(frame, state.parameters, effective_input(ex, frame), extra)


def batch_input(ex: Execution, frame: Frame, batcher: Mapping[str, JSON]) -> JSON:
    """ItemBatcher's BatchInput."""
    if frame.state.jsonata:
        return evaluator(ex, frame).field(batcher["BatchInput"], "ItemBatcher/BatchInput")
    return ex.template(frame, batcher["BatchInput"], effective_input(ex, frame))

"""Static validation of a state machine definition: every problem at once, never an exception.

Like AWS's ValidateStateMachineDefinition, ``validate()`` returns diagnostics with a severity,
a stable code (AWS's where one exists, e.g. ``SCHEMA_VALIDATION_FAILED``,
``MISSING_TRANSITION_TARGET``), a message saying how to fix the problem and a JSON-pointer
location. It checks more than AWS documents: reachability, path and intrinsic syntax, Choice
operand types, Retry/Catch ordering, and warns about legal but suspicious constructs.
``definition.parse()`` stays the interpreter's fast, first-problem parse.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from statemachine import expressions, intrinsics, paths
from statemachine.definition import _surrogate_location
from statemachine.errors import IntrinsicError
from statemachine.payload import text_size
from statemachine.validate_states import (
    _CATCHER_FIELDS,
    _COMMON,
    _CONTROL,
    _FIELDS,
    _FLOW,
    _HTTP_STATUS_ERROR,
    _JSONATA_INSTEAD,
    _JSONPATH_INSTEAD,
    _LOOKS_LIKE_PATH,
    _MACHINE_FIELDS,
    _RETRIER_FIELDS,
    _STATE_CHECKS,
    _STATES_ERRORS,
    _VARIABLE_NAME,
    _VARIABLE_REFERENCE,
    ERROR,
    JSON,
    JSONATA,
    JSONPATH,
    MAX_DEFINITION_BYTES,
    MAX_DELAY_SECONDS,
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_SECONDS,
    STATE_TYPES,
    WARNING,
    _Duplicates,
    _is_int,
    _is_jsonata,
    _is_number,
    _kind,
    _object,
    _pointer,
    _reject_constant,
)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a definition (the shape of AWS's ValidateStateMachineDefinition)."""

    severity: str  # "ERROR" | "WARNING"
    code: str
    message: str
    location: str  # JSON pointer; "/" is the whole document


def result(diagnostics: Iterable[Diagnostic]) -> str:
    """``"FAIL"`` if any diagnostic is an ERROR, else ``"OK"`` (AWS's ``result`` field)."""
    return "FAIL" if any(d.severity == ERROR for d in diagnostics) else "OK"


# --- Entry point --------------------------------------------------------------------------


def validate(definition: str | bytes | Mapping[str, JSON]) -> list[Diagnostic]:
    """Every diagnostic for an ASL definition: JSON text, UTF-8 bytes or a decoded object.

    Never raises: malformed input gives INVALID_JSON_DESCRIPTION or SCHEMA_VALIDATION_FAILED
    at "/", and a document nested deeper than the checker can follow gives TOO_DEEPLY_NESTED.
    """
    checker = _Checker()
    document = checker.load(definition)
    if document is _UNUSABLE:
        return checker.out
    try:
        checker.document(document)
    except RecursionError:
        checker.out = [d for d in checker.out if d.code != "TOO_DEEPLY_NESTED"]
        checker.error("TOO_DEEPLY_NESTED", "The definition is nested too deeply to check", "/")
    return checker.out


_UNUSABLE: Final = object()


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text} is beyond the range of a double")
    return value


@dataclass(slots=True)
class _Node:
    """What the graph checks need to know about one state."""

    name: str
    kind: str | None
    location: str
    targets: list[str]
    busy: bool  # a Task or Wait, or a Map/Parallel containing one: time passes here
    terminal: bool


@dataclass(slots=True)
class _Checker:
    out: list[Diagnostic] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # state name -> location, all scopes
    # (states of the scope, target, location) for every transition, checked once all is read.
    transitions: list[tuple[Mapping[str, JSON], JSON, str]] = field(default_factory=list)
    assigned: list[tuple[str, str]] = field(default_factory=list)  # (variable, location)

    def error(self, code: str, message: str, location: str) -> None:
        self.out.append(Diagnostic(ERROR, code, message, location or "/"))

    def warning(self, code: str, message: str, location: str) -> None:
        self.out.append(Diagnostic(WARNING, code, message, location or "/"))

    def schema(self, message: str, location: str) -> None:
        self.error("SCHEMA_VALIDATION_FAILED", message, location)

    # --- Loading ---

    def load(self, definition: object) -> JSON:
        if isinstance(definition, bytes | bytearray):
            if len(definition) > MAX_DEFINITION_BYTES:
                self.too_large(len(definition))
            try:
                text = bytes(definition).decode("utf-8")
            except UnicodeDecodeError as exc:
                self.error(
                    "INVALID_JSON_DESCRIPTION",
                    f"The definition is not valid UTF-8 (byte {exc.start}); encode it as UTF-8",
                    "/",
                )
                return _UNUSABLE
        elif isinstance(definition, str):
            text = definition
            size = text_size(text)
            if size > MAX_DEFINITION_BYTES:
                self.too_large(size)
        else:
            return self.load_value(definition)
        return self.parse_text(text)

    def parse_text(self, definition: str) -> JSON:
        if not definition.strip():
            self.error("MISSING_DESCRIPTION", "The definition is empty", "/")
            return _UNUSABLE
        try:
            document = json.loads(
                definition,
                object_pairs_hook=_object,
                parse_constant=_reject_constant,
                parse_float=_finite_float,
            )
            json.dumps(document, ensure_ascii=False).encode("utf-8")
            return document
        except UnicodeEncodeError as exc:
            # JSON text may spell half of a surrogate pair ("\ud800"): not Unicode text.
            code = f"U+{ord(exc.object[exc.start]):04X}"
            self.error(
                "INVALID_JSON_DESCRIPTION",
                f"The definition contains a lone surrogate ({code}), which is not Unicode text",
                _surrogate_location(document, "") or "/",
            )
            return _UNUSABLE
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            message = f"The definition is not valid JSON: {exc.msg} at {where}"
        except ValueError as exc:
            message = f"The definition is not valid JSON: {exc}"
        except RecursionError:
            self.error("TOO_DEEPLY_NESTED", "The definition is nested too deeply", "/")
            return _UNUSABLE
        self.error("INVALID_JSON_DESCRIPTION", message, "/")
        return _UNUSABLE

    def load_value(self, value: object) -> JSON:
        # A private JSON copy: tuples become lists, odd objects and NaN are refused, and
        # the caller's object cannot change under the checker.
        if isinstance(value, Mapping) and not isinstance(value, dict):
            value = dict(value)
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            self.schema(f"The definition is not a JSON value: {exc}", "/")
            return _UNUSABLE
        except RecursionError:
            self.error("TOO_DEEPLY_NESTED", "The definition is nested too deeply", "/")
            return _UNUSABLE
        size = text_size(text)
        if size > MAX_DEFINITION_BYTES:
            self.too_large(size)
        try:
            return json.loads(text)
        except RecursionError:
            self.error("TOO_DEEPLY_NESTED", "The definition is nested too deeply", "/")
            return _UNUSABLE

    def too_large(self, size: int) -> None:
        self.error(
            "DEFINITION_TOO_LARGE",
            f"The definition is {size} bytes; AWS accepts at most {MAX_DEFINITION_BYTES}. "
            "Move large constants to the execution input or an S3 object",
            "/",
        )

    # --- Document ---

    def document(self, document: JSON) -> None:
        if not isinstance(document, dict):
            self.schema(f"A definition must be a JSON object, not {_kind(document)}", "/")
            return
        depth = _depth(document)
        if depth > MAX_DEPTH:
            self.error(
                "TOO_DEEPLY_NESTED",
                f"The definition is nested {depth} levels deep; the limit is {MAX_DEPTH}",
                "/",
            )
            return
        language = document.get("QueryLanguage", JSONPATH)
        if language not in (JSONPATH, JSONATA):
            language = JSONPATH  # reported by machine()
        self.machine(document, "", "top", language, JSONATA if language == JSONATA else None)
        self.resolve_transitions()
        self.unused_variables(document)

    def machine(self, doc: JSON, at: str, kind: str, language: str, locked: str | None) -> bool:
        """Check a machine (top level, branch, item processor); return whether it is busy."""
        if not isinstance(doc, dict):
            self.schema(f"A state machine must be an object, not {_kind(doc)}", at)
            return True
        self.unknown_fields(doc, _MACHINE_FIELDS[kind], at, "a state machine")
        if kind == "top":
            self.top_level(doc)
        if kind == "processor" and "ProcessorConfig" in doc:
            self.processor_config(doc["ProcessorConfig"], f"{at}/ProcessorConfig")
        states = doc.get("States")
        if not isinstance(states, dict) or not states:
            if "States" not in doc:
                what = "is missing"
            elif isinstance(states, dict):
                what = "is empty"
            else:
                what = f"is {_kind(states)}"
            self.schema(f"States {what}; it must be a non-empty object of states", at)
            states = states if isinstance(states, dict) else {}
        if isinstance(states, _Duplicates):
            for name in states.duplicates:
                self.error(
                    "DUPLICATE_STATE_NAME",
                    f"State '{name}' is defined more than once in the same States object",
                    f"{at}/States{_pointer(name)}",
                )
        nodes = [
            self.state(name, body, f"{at}/States{_pointer(name)}", states, language, locked)
            for name, body in states.items()
        ]
        start = doc.get("StartAt")
        if "StartAt" not in doc:
            self.schema("StartAt is missing; name the first state to run", at)
        elif not isinstance(start, str):
            self.schema(f"StartAt must be a state name (a string), not {_kind(start)}", at)
        elif states:
            self.transitions.append((states, start, f"{at}/StartAt"))
        self.graph(nodes, start if isinstance(start, str) and start in states else None, at)
        return any(node.busy for node in nodes)

    def top_level(self, doc: Mapping[str, JSON]) -> None:
        if "Version" in doc and doc["Version"] != "1.0":
            self.schema('Version must be "1.0" (the only ASL version)', "/Version")
        if "TimeoutSeconds" in doc:
            self.integer(doc["TimeoutSeconds"], "/TimeoutSeconds", "TimeoutSeconds", 0)
        if "QueryLanguage" in doc and doc["QueryLanguage"] not in (JSONPATH, JSONATA):
            self.schema('QueryLanguage must be "JSONPath" or "JSONata"', "/QueryLanguage")
        if "Comment" in doc and not isinstance(doc["Comment"], str):
            self.schema("Comment must be a string", "/Comment")

    def processor_config(self, config: JSON, at: str) -> None:
        if not isinstance(config, dict):
            self.schema("ProcessorConfig must be an object", at)
            return
        self.unknown_fields(config, frozenset({"Mode", "ExecutionType"}), at, "ProcessorConfig")
        self.choice_of(config, "Mode", ("INLINE", "DISTRIBUTED"), at)
        self.choice_of(config, "ExecutionType", ("STANDARD", "EXPRESS"), at)

    # --- States ---

    def state(
        self,
        name: str,
        body: JSON,
        at: str,
        states: Mapping[str, JSON],
        inherited: str,
        locked: str | None,
    ) -> _Node:
        self.state_name(name, at)
        targets = _targets(body)
        self.transitions.extend((states, target, at + where) for target, where in targets)
        node = _Node(name, None, at, [t for t, _ in targets], busy=False, terminal=False)
        if not isinstance(body, dict):
            self.schema(f"A state must be an object, not {_kind(body)}", at)
            node.terminal = True  # do not also report a missing end state
            return node
        kind = body.get("Type")
        if kind not in STATE_TYPES:
            what = "is missing" if "Type" not in body else f"'{kind}' is not a state type"
            self.schema(f"Type {what}; use one of {', '.join(STATE_TYPES)}", at + "/Type")
            node.terminal = True
            return node
        node.kind = kind
        language = self.state_language(body, at, inherited, locked)
        self.state_fields(kind, body, at, language)
        if "Comment" in body and not isinstance(body["Comment"], str):
            self.schema("Comment must be a string", f"{at}/Comment")
        node.terminal = kind in ("Succeed", "Fail") or body.get("End") is True
        node.busy = kind in ("Task", "Wait")
        if kind not in ("Choice", "Succeed", "Fail"):
            self.flow(body, at)
        if language == JSONPATH:
            self.jsonpath_io(kind, body, at)
        else:
            self.jsonata_strings(body, at)
        if "Assign" in body:
            self.assign(body["Assign"], f"{at}/Assign", language)
        for key, check in (("Retry", self.retriers), ("Catch", self.catchers)):
            if key in body and kind in ("Task", "Parallel", "Map"):
                check(body[key], f"{at}/{key}", language)
        nested = _STATE_CHECKS[kind](self, body, at, language)
        for doc, where, machine_kind in nested:
            node.busy |= self.machine(doc, where, machine_kind, language, locked)
        return node

    def state_name(self, name: str, at: str) -> None:
        if name in self.names:
            self.error(
                "DUPLICATE_STATE_NAME",
                f"State name '{name}' is already used at {self.names[name]}; names must be "
                "unique across the whole machine, nested Map and Parallel states included",
                at,
            )
        else:
            self.names[name] = at
        if not name or len(name) > MAX_NAME_LENGTH:
            self.error(
                "INVALID_STATE_NAME",
                f"State names must be 1 to {MAX_NAME_LENGTH} characters; this one has {len(name)}",
                at,
            )
        if _CONTROL.search(name):
            self.error(
                "INVALID_STATE_NAME",
                f"State name {name!r} contains control characters; remove them",
                at,
            )

    def state_language(
        self, body: Mapping[str, JSON], at: str, inherited: str, locked: str | None
    ) -> str:
        if "QueryLanguage" not in body:
            return inherited
        language = body["QueryLanguage"]
        if language not in (JSONPATH, JSONATA):
            self.schema('QueryLanguage must be "JSONPath" or "JSONata"', f"{at}/QueryLanguage")
            return inherited
        if locked == JSONATA and language == JSONPATH:
            self.schema(
                "A state inside a JSONata machine or state cannot switch back to JSONPath; "
                "remove QueryLanguage or rewrite the state with JSONata",
                f"{at}/QueryLanguage",
            )
            return JSONATA
        return str(language)

    def state_fields(self, kind: str, body: Mapping[str, JSON], at: str, language: str) -> None:
        both, jsonpath, jsonata = _FIELDS[kind]
        mine, other = (jsonpath, jsonata) if language == JSONPATH else (jsonata, jsonpath)
        for key in body:
            if key in _COMMON or key in both or key in mine:
                continue
            where = at + _pointer(key)
            if key in other:
                instead = (_JSONATA_INSTEAD if language == JSONATA else _JSONPATH_INSTEAD).get(
                    key, f"{key.removesuffix('Path')} with a {{% %}} expression"
                )
                self.schema(
                    f"{key} is a {'JSONPath' if language == JSONATA else 'JSONata'} field and "
                    f"this state uses {language}; use {instead}",
                    where,
                )
            elif key in _FLOW:
                self.schema(f"A {kind} state cannot have {key}; remove it", where)
            else:
                self.schema(f"{key} is not a field of a {kind} state; remove it", where)

    def flow(self, body: Mapping[str, JSON], at: str) -> None:
        end = body.get("End")
        if "End" in body and not isinstance(end, bool):
            self.schema(f"End must be true or false, not {_kind(end)}", f"{at}/End")
        if "Next" in body and not isinstance(body["Next"], str):
            self.schema("Next must be a state name (a string)", f"{at}/Next")
        if "Next" in body and end is True:
            self.schema("A state cannot have both Next and End: true; keep one", at)
        elif "Next" not in body and end is not True:
            self.schema("A state needs Next (the state to go to) or End: true", at)

    def unknown_fields(
        self, doc: Mapping[str, JSON], allowed: frozenset[str], at: str, what: str
    ) -> None:
        for key in doc:
            if key not in allowed:
                self.schema(f"{key} is not a field of {what}; remove it", f"{at}{_pointer(key)}")

    # --- Values ---

    def integer(self, value: JSON, at: str, name: str, low: int, high: int = MAX_SECONDS) -> bool:
        if _is_int(value) and low <= value <= high:
            return True
        self.schema(f"{name} must be an integer from {low} to {high:,}, not {value!r}", at)
        return False

    def choice_of(
        self, doc: Mapping[str, JSON], key: str, allowed: tuple[str, ...], at: str
    ) -> None:
        if key in doc and doc[key] not in allowed:
            self.schema(f"{key} must be one of {', '.join(allowed)}", f"{at}/{key}")

    def jsonata_or(self, value: JSON, language: str) -> bool:
        return language == JSONATA and isinstance(value, str) and _is_jsonata(value)

    def exclusive(self, body: Mapping[str, JSON], keys: tuple[str, ...], at: str) -> None:
        present = [k for k in keys if k in body]
        if len(present) > 1:
            self.schema(f"Use only one of {' and '.join(present)}", at)

    def path(
        self,
        value: JSON,
        at: str,
        name: str,
        *,
        reference: bool = False,
        context: bool = True,
        variable: bool = True,
        nullable: bool = False,
    ) -> None:
        if value is None and nullable:
            return
        problem = _path_problem(value, reference=reference, context=context, variable=variable)
        if problem:
            code = "INVALID_REFERENCE_PATH" if reference else "INVALID_JSONPATH"
            self.error(code, f"{name}: {problem}", at)

    def expression(self, value: JSON, at: str, name: str) -> None:
        """The value of a ``.$`` field: a path, a context path, a variable or an intrinsic."""
        if not isinstance(value, str):
            self.schema(f"{name} ends in .$, so its value must be a path string", at)
        elif value.startswith("States."):
            self.intrinsic(value, at)
        elif not value.startswith("$"):
            self.error(
                "INVALID_JSONPATH",
                f"{name} ends in .$ but '{value}' is neither a path ($..., $$..., $var) nor "
                "an intrinsic function; drop the .$ suffix for a literal value",
                at,
            )
        else:
            self.path(value, at, name)

    def intrinsic(self, text: str, at: str) -> None:
        try:
            call = intrinsics.parse(text)
        except IntrinsicError as exc:
            self.error("INVALID_INTRINSIC", f"{exc.cause}", at)
            return
        pending: list[intrinsics.Node] = [call]
        while pending:
            node = pending.pop()
            if isinstance(node, intrinsics.Call):
                pending.extend(node.args)
            elif isinstance(node, intrinsics.PathArg):
                problem = _path_problem(node.text, reference=False, context=True)
                if problem:
                    self.error("INVALID_INTRINSIC", f"In '{text}': {problem}", at)

    def template(self, value: JSON, at: str, *, static: bool = False) -> None:
        """Walk a JSONPath payload template (Parameters, ResultSelector, ItemSelector, ...)."""
        pending: list[tuple[JSON, str]] = [(value, at)]
        while pending:
            current, where = pending.pop()
            items: Iterable[tuple[str | int, JSON]]
            if isinstance(current, dict):
                items = current.items()
            elif isinstance(current, list):
                items = enumerate(current)
            else:
                continue
            for key, child in items:
                here = f"{where}{_pointer(key)}"
                if isinstance(key, str) and key.endswith(".$"):
                    if static:
                        self.warning(
                            "PASS_RESULT_IS_STATIC",
                            f"Result is used as is, so '{key}' is not evaluated; use "
                            "Parameters to build a value from paths",
                            here,
                        )
                    else:
                        self.expression(child, here, key)
                    continue
                if not static and isinstance(child, str) and _LOOKS_LIKE_PATH.match(child):
                    self.warning(
                        "NO_DOLLAR",
                        f"'{child}' looks like a path but the key '{key}' does not end in .$, "
                        f"so it is a literal string; rename the key to '{key}.$' to read it",
                        here,
                    )
                pending.append((child, here))

    def jsonpath_io(self, kind: str, body: Mapping[str, JSON], at: str) -> None:
        for key in ("InputPath", "OutputPath"):
            if key in body:
                self.path(body[key], f"{at}/{key}", key, nullable=True)
        if "ResultPath" in body:
            self.result_path(body["ResultPath"], f"{at}/ResultPath")
        for key in ("Parameters", "ResultSelector", "ItemSelector", "Credentials"):
            if key in body:
                if key in ("ResultSelector", "ItemSelector") and not isinstance(body[key], dict):
                    self.schema(f"{key} must be an object", f"{at}/{key}")
                self.template(body[key], f"{at}/{key}")
        if kind == "Pass" and "Result" in body:
            self.template(body["Result"], f"{at}/Result", static=True)

    def result_path(self, value: JSON, at: str) -> None:
        self.path(
            value, at, "ResultPath", reference=True, context=False, variable=False, nullable=True
        )

    def jsonata_strings(self, body: Mapping[str, JSON], at: str) -> None:
        """Every ``{% %}`` string of a JSONata state must be one whole expression."""
        pending: list[tuple[JSON, str]] = [
            (value, f"{at}{_pointer(key)}")
            for key, value in body.items()
            if key not in _NOT_EXPRESSIONS
        ]
        while pending:
            value, where = pending.pop()
            if isinstance(value, dict):
                pending.extend(
                    (v, f"{where}{_pointer(k)}") for k, v in value.items() if k not in ("Next",)
                )
            elif isinstance(value, list):
                pending.extend((v, f"{where}/{i}") for i, v in enumerate(value))
            elif isinstance(value, str) and "%" in value:
                self.jsonata(value, where)

    def jsonata(self, text: str, at: str) -> None:
        # AWS evaluates a string only when it is exactly '{% ... %}'; with anything outside
        # the delimiters the string is a literal (recorded AWS runs confirm this).
        if _is_jsonata(text) and len(text) >= 4:
            problem = _jsonata_problem(text[2:-2])
            if problem:
                self.error("INVALID_JSONATA", f"Invalid JSONata expression: {problem}", at)
        elif text.startswith("{%"):
            self.error(
                "INVALID_JSONATA",
                "The expression starts with '{%' but does not end with '%}'; close it",
                at,
            )
        elif text.strip().startswith("{%") or text.endswith("%}"):
            self.warning(
                "JSONATA_NOT_EVALUATED",
                "Only a string that is exactly '{% expression %}' is evaluated; with text "
                "outside the delimiters it is a literal string. Remove the extra text",
                at,
            )

    def assign(self, value: JSON, at: str, language: str) -> None:
        if not isinstance(value, dict):
            self.schema(f"Assign must be an object of variables, not {_kind(value)}", at)
            return
        for key, child in value.items():
            here = f"{at}{_pointer(key)}"
            name = key.removesuffix(".$") if language == JSONPATH else key
            if not _VARIABLE_NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
                self.error(
                    "INVALID_VARIABLE_NAME",
                    f"'{name}' is not a variable name: use letters, digits and _ (not first), "
                    f"at most {MAX_NAME_LENGTH} characters; sub-paths cannot be assigned",
                    here,
                )
            else:
                self.assigned.append((name, here))
            if language == JSONPATH:
                if key.endswith(".$"):
                    self.expression(child, here, key)
                else:
                    self.template(child, here)

    # --- Retry and Catch (States Language spec, "Errors") ---

    def error_names(self, entry: Mapping[str, JSON], at: str, what: str) -> tuple[str, ...]:
        names = entry.get("ErrorEquals")
        if "ErrorEquals" not in entry:
            self.schema(f"ErrorEquals is missing; list the errors this {what} handles", at)
            return ()
        if not isinstance(names, list) or not names:
            self.schema("ErrorEquals must be a non-empty array of error names", at + "/ErrorEquals")
            return ()
        good: list[str] = []
        for i, name in enumerate(names):
            where = f"{at}/ErrorEquals/{i}"
            if not isinstance(name, str) or not name:
                self.schema("Error names must be non-empty strings", where)
            elif name.startswith("States.") and not (
                name in _STATES_ERRORS or _HTTP_STATUS_ERROR.fullmatch(name)
            ):
                self.warning(
                    "UNKNOWN_ERROR_NAME",
                    f"'{name}' is not a predefined States error and custom errors cannot "
                    "start with 'States.'; check the spelling",
                    where,
                )
                good.append(name)
            else:
                good.append(name)
        if "States.ALL" in good and len(names) > 1:
            self.error(
                f"{what.upper()}_STATES_ALL_NOT_ALONE",
                "States.ALL must be the only name in its ErrorEquals; it already matches "
                "every error",
                at + "/ErrorEquals",
            )
        return tuple(good)

    def error_handlers(
        self, value: JSON, at: str, what: str, fields: frozenset[str]
    ) -> Iterator[tuple[int, Mapping[str, JSON], str]]:
        if not isinstance(value, list):
            self.schema(f"{'Retry' if what == 'retrier' else 'Catch'} must be an array", at)
            return
        covered: set[str] = set()
        for i, entry in enumerate(value):
            where = f"{at}/{i}"
            if not isinstance(entry, dict):
                self.schema(f"A {what} must be an object", where)
                continue
            self.unknown_fields(entry, fields, where, f"a {what}")
            names = self.error_names(entry, where, what)
            if "States.ALL" in names and i != len(value) - 1:
                self.error(
                    f"{what.upper()}_STATES_ALL_NOT_LAST",
                    f"A {what} with States.ALL must be the last one; those after it can "
                    "never be used",
                    where,
                )
            if names and ("States.ALL" in covered or covered.issuperset(names)):
                self.warning(
                    f"{what.upper()}_NEVER_MATCHES",
                    f"Earlier {what}s already handle {', '.join(names)}, so this {what} "
                    "is never used; remove it or move it up",
                    where,
                )
            covered.update(names)
            yield i, entry, where

    def retriers(self, value: JSON, at: str, language: str) -> None:
        for _, entry, where in self.error_handlers(value, at, "retrier", _RETRIER_FIELDS):
            for key, low, high in (
                ("IntervalSeconds", 1, MAX_SECONDS),
                ("MaxAttempts", 0, MAX_SECONDS),
                ("MaxDelaySeconds", 1, MAX_DELAY_SECONDS),
            ):
                if key in entry:
                    self.integer(entry[key], f"{where}/{key}", key, low, high)
            rate = entry.get("BackoffRate", 2.0)
            if not _is_number(rate) or rate < 1.0:
                self.schema(
                    f"BackoffRate must be a number of at least 1.0, not {rate!r}",
                    f"{where}/BackoffRate",
                )
            self.choice_of(entry, "JitterStrategy", ("FULL", "NONE"), where)
            interval, delay = entry.get("IntervalSeconds", 1), entry.get("MaxDelaySeconds")
            if _is_number(interval) and _is_number(delay) and delay < interval:
                self.warning(
                    "RETRY_MAX_DELAY_BELOW_INTERVAL",
                    f"MaxDelaySeconds ({delay}) is below IntervalSeconds ({interval}), so "
                    "every retry waits MaxDelaySeconds",
                    f"{where}/MaxDelaySeconds",
                )

    def catchers(self, value: JSON, at: str, language: str) -> None:
        fields = _CATCHER_FIELDS[language]
        for _, entry, where in self.error_handlers(value, at, "catcher", fields):
            if "Next" not in entry:
                self.schema("A catcher needs Next, the state to go to after the error", where)
            elif not isinstance(entry["Next"], str):
                self.schema("Next must be a state name (a string)", f"{where}/Next")
            if language == JSONPATH and "ResultPath" in entry:
                self.result_path(entry["ResultPath"], f"{where}/ResultPath")
            if "Assign" in entry:
                self.assign(entry["Assign"], f"{where}/Assign", language)

    # --- Graph ---

    def graph(self, nodes: list[_Node], start: str | None, at: str) -> None:
        if nodes and not any(node.terminal for node in nodes):
            self.error(
                "MISSING_END_STATE",
                "No state ends this machine; give one state End: true, or add a Succeed "
                "or Fail state",
                at + "/States",
            )
        by_name = {node.name: node for node in nodes}
        edges = {n.name: [t for t in n.targets if t in by_name] for n in nodes}
        if start is None:
            return
        seen = {start}
        pending = [start]
        while pending:
            for target in edges[pending.pop()]:
                if target not in seen:
                    seen.add(target)
                    pending.append(target)
        for node in nodes:
            if node.name not in seen:
                self.error(
                    "UNREACHABLE_STATE",
                    f"State '{node.name}' cannot be reached from StartAt '{start}'; "
                    "transition to it or remove it",
                    node.location,
                )
        for component in _cycles(edges):
            if not any(by_name[name].busy for name in component):
                first = min(component, key=lambda name: nodes.index(by_name[name]))
                self.warning(
                    "LOOP_WITHOUT_WAIT",
                    f"States {', '.join(sorted(component))} form a loop without a Task or "
                    "Wait state; it may spin until the execution hits its history limit",
                    by_name[first].location,
                )

    def resolve_transitions(self) -> None:
        for states, target, at in self.transitions:
            if not isinstance(target, str) or target in states:
                continue
            if target in self.names:
                detail = (
                    f"'{target}' belongs to another machine scope ({self.names[target]}); "
                    "a state can only go to states of its own States object"
                )
            else:
                detail = f"there is no state named '{target}'"
            self.error("MISSING_TRANSITION_TARGET", f"Missing transition target: {detail}", at)

    def unused_variables(self, document: JSON) -> None:
        if not self.assigned:
            return
        used: set[str] = set()
        pending: list[JSON] = [document]
        while pending:
            value = pending.pop()
            if isinstance(value, dict):
                pending.extend(value.values())
            elif isinstance(value, list):
                pending.extend(value)
            elif isinstance(value, str) and "$" in value:
                used.update(_VARIABLE_REFERENCE.findall(value))
        for name, at in self.assigned:
            if name not in used:
                self.warning(
                    "UNUSED_VARIABLE",
                    f"Variable '{name}' is assigned but never read (${name}); remove it",
                    at,
                )


# Keys of a JSONata state whose values are never expressions.
_NOT_EXPRESSIONS: Final = frozenset(
    {"Type", "Comment", "QueryLanguage", "Next", "End", "Default", "Resource", "Branches"}
    | {"ItemProcessor", "Iterator", "Retry"}
)


def _targets(body: JSON) -> list[tuple[str, str]]:
    """Every state a state can go to, with where it is named: Next, Choices, Default, Catch."""
    if not isinstance(body, dict):
        return []
    found: list[tuple[JSON, str]] = [(body.get("Next"), "/Next"), (body.get("Default"), "/Default")]
    for key in ("Choices", "Catch"):
        entries = body.get(key)
        if isinstance(entries, list):
            found.extend(
                (e.get("Next"), f"/{key}/{i}/Next")
                for i, e in enumerate(entries)
                if isinstance(e, dict)
            )
    return [(t, where) for t, where in found if isinstance(t, str)]


def _path_problem(
    value: JSON, *, reference: bool, context: bool, variable: bool = True
) -> str | None:
    """Why ``value`` is not a valid path (``$...``, ``$$...``, ``$var...``), or None."""
    if not isinstance(value, str):
        return f"a path must be a string beginning with '$', not {_kind(value)}"
    text = value
    if text.startswith("$$"):
        if not context:
            return f"'{value}' reads the context object ($$), which is not allowed here"
        text = "$" + text[2:]
    else:
        match = _VARIABLE_REFERENCE.match(text)
        if match:
            if not variable:
                return f"'{value}' names a variable, which is not allowed here; use a $... path"
            text = "$" + text[match.end() :]
    try:
        compiled = paths.compile_path(text)
    except paths.PathSyntaxError as exc:
        return exc.message.replace(f"'{text}'", f"'{value}'")
    if reference and not compiled.definite:
        return (
            f"'{value}' is not a reference path: wildcards, filters, slices, unions and "
            "'..' cannot be written to"
        )
    return None


@lru_cache(maxsize=4096)
def _jsonata_problem(expression: str) -> str | None:
    if not expression.strip():
        return "the expression between {% and %} is empty"
    return expressions.compile_problem(expression)


def _depth(document: JSON) -> int:
    deepest = 0
    pending: list[tuple[JSON, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                break
        if isinstance(value, dict):
            pending.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            pending.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return deepest


def _cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components that contain a cycle (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = edges[node]
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found

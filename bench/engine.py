"""In-memory state transitions per second: Statewright's engine beside moto's Step Functions parser.

Run from the repository root:

    python bench/engine.py [--seconds N] [--min-reps N] [--moto {direct,boto3,both,none}]

Two workloads are run through ``statemachine.run_local`` and, as a baseline measured in the
same process, through moto's Step Functions "parser" backend (a port of LocalStack's ASL
interpreter; install it with ``pip install 'moto[stepfunctions]'`` or the ``bench`` extra).
Without moto the script prints Statewright's figures only and says the baseline is missing.

A state transition is one state entered: history events whose type ends with
``StateEntered`` (AWS bills transitions this way; Map iterations' states count too).

Method: the process is pinned to one CPU, the idlest (``--cpu N`` to choose, ``--no-pin`` to
disable). Each workload runs once untimed per engine (warm-up; the final outputs and the
transition counts of the engines are compared). Then the engines run in interleaved rounds -- one repetition each of at least
``--batch`` seconds of executions -- until each engine has run ``--seconds`` and made
``--min-reps`` repetitions; the figure reported is the median of the repetitions'
transitions/s and the ratio is of those medians (the machine is shared and noisy;
interleaving exposes both engines to the same noise). Timing uses ``time.perf_counter``
around each execution only.

moto is driven two ways, both through its real interpreter
(``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``):

* ``boto3``: what users do -- an in-process boto3 client: ``start_execution``, then poll
  ``describe_execution`` until it is no longer RUNNING; timed from start to completion.
* ``direct``: the same backend without the boto3/HTTP-emulation layer: the backend's
  ``start_execution``, then join moto's execution thread. This is the fastest honest way to
  run moto's interpreter, so the headline ratio is computed against it.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    from statemachine import run_local
except ModuleNotFoundError as missing:  # not installed: run from a checkout
    if missing.name != "statemachine":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from statemachine import run_local

JSON = Any
GOAL_RATE = 30_000  # transitions/s on one core
GOAL_RATIO = 100  # times moto

# One timed execution: returns (seconds, transitions, final output).
RunOnce = Callable[[], tuple[float, int, JSON]]


@dataclass(frozen=True)
class Workload:
    """A state machine definition and the execution input it is run with."""

    name: str
    definition: dict[str, JSON]
    input: JSON


def pass_chain(length: int = 20) -> Workload:
    """``length`` Pass states, each building a small object with a path and an intrinsic."""
    states: dict[str, JSON] = {}
    for i in range(1, length + 1):
        state: dict[str, JSON] = {
            "Type": "Pass",
            "Parameters": {
                "step": i,
                "prev.$": "$.last.step",
                "n.$": "States.MathAdd($.last.n, 1)",
            },
            "ResultPath": "$.last",
        }
        if i < length:
            state["Next"] = f"Step{i + 1}"
        else:
            state["End"] = True
        states[f"Step{i}"] = state
    return Workload(
        name=f"pass-chain-{length}",
        definition={"Comment": "Pass chain", "StartAt": "Step1", "States": states},
        input={"value": "hello", "last": {"step": 0, "n": 0}},
    )


def map_pass_choice(items: int = 100) -> Workload:
    """An inline Map over ``items`` numbers: Pass (Parameters), Choice, then Pass or Succeed."""
    processor = {
        "ProcessorConfig": {"Mode": "INLINE"},
        "StartAt": "Shape",
        "States": {
            "Shape": {
                "Type": "Pass",
                "Parameters": {"value.$": "$", "double.$": "States.MathAdd($, $)"},
                "Next": "Check",
            },
            "Check": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.value", "NumericGreaterThan": items // 2 - 1, "Next": "Big"}
                ],
                "Default": "Small",
            },
            "Big": {"Type": "Pass", "Result": "big", "ResultPath": "$.size", "End": True},
            "Small": {"Type": "Succeed"},
        },
    }
    definition = {
        "Comment": "Map with Pass and Choice",
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "MaxConcurrency": 0,
                "ItemProcessor": processor,
                "ResultPath": "$.results",
                "End": True,
            }
        },
    }
    return Workload(
        name=f"map-{items} pass+choice",
        definition=definition,
        input={"items": list(range(items))},
    )


WORKLOADS: tuple[Workload, ...] = (pass_chain(20), map_pass_choice(100))


# --- Statewright ------------------------------------------------------------------------


def statewright_runner(workload: Workload) -> RunOnce:
    """Run the workload with run_local; time the whole call (parse included, as moto parses too)."""

    def run() -> tuple[float, int, JSON]:
        start = time.perf_counter()
        result = run_local(workload.definition, workload.input)
        elapsed = time.perf_counter() - start
        if result.status != "SUCCEEDED":
            raise RuntimeError(
                f"statewright: {workload.name} ended {result.status}: {result.error} {result.cause}"
            )
        transitions = sum(1 for event in result.events if event.type.endswith("StateEntered"))
        return elapsed, transitions, result.output

    return run


# --- moto -------------------------------------------------------------------------------


ROLE_ARN = "arn:aws:iam::123456789012:role/statewright-bench"
REGION = "us-east-1"


class MotoBaseline:
    """moto's Step Functions parser backend inside a ``mock_aws`` context."""

    def __init__(self) -> None:
        import boto3
        import moto
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends
        from moto.stepfunctions.parser.utils import TMP_THREADS

        self.version = moto.__version__
        self.boto3_version = boto3.__version__
        self._mock = moto.mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self.client = boto3.client(
            "stepfunctions",
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.backend = stepfunctions_parser_backends[DEFAULT_ACCOUNT_ID][REGION]
        self._threads: list[Any] = TMP_THREADS
        self._counter = 0
        self._arns: dict[str, str] = {}

    def close(self) -> None:
        self._mock.stop()

    def _next_name(self) -> str:
        self._counter += 1
        return f"bench-{self._counter}"

    def _state_machine(self, workload: Workload) -> str:
        if workload.name not in self._arns:
            name = "".join(c if c.isalnum() else "-" for c in workload.name)
            response = self.client.create_state_machine(
                name=name, definition=json.dumps(workload.definition), roleArn=ROLE_ARN
            )
            self._arns[workload.name] = response["stateMachineArn"]
        return self._arns[workload.name]

    def _history_transitions(self, execution_arn: str) -> int:
        count = 0
        kwargs: dict[str, str] = {}
        while True:
            page = self.client.get_execution_history(
                executionArn=execution_arn, maxResults=1000, **kwargs
            )
            count += sum(1 for event in page["events"] if event["type"].endswith("StateEntered"))
            if "nextToken" not in page:
                return count
            kwargs = {"nextToken": page["nextToken"]}

    def boto3_runner(self, workload: Workload, poll: float) -> RunOnce:
        """start_execution via boto3, poll describe_execution every ``poll`` s until done."""
        arn = self._state_machine(workload)
        payload = json.dumps(workload.input)

        def run() -> tuple[float, int, JSON]:
            first_new = len(self._threads)
            start = time.perf_counter()
            execution_arn = self.client.start_execution(
                stateMachineArn=arn, name=self._next_name(), input=payload
            )["executionArn"]
            while True:
                described = self.client.describe_execution(executionArn=execution_arn)
                if described["status"] != "RUNNING":
                    break
                time.sleep(poll)
            elapsed = time.perf_counter() - start
            if described["status"] != "SUCCEEDED":
                raise RuntimeError(
                    f"moto: {workload.name} ended {described['status']}: {described}"
                )
            del self._threads[first_new:]  # finished threads; keep moto's list from growing
            return (
                elapsed,
                self._history_transitions(execution_arn),
                json.loads(described["output"]),
            )

        return run

    def direct_runner(self, workload: Workload) -> RunOnce:
        """The backend's start_execution, then join the execution's worker thread."""
        arn = self._state_machine(workload)
        payload = json.dumps(workload.input)

        def run() -> tuple[float, int, JSON]:
            first_new = len(self._threads)
            start = time.perf_counter()
            execution = self.backend.start_execution(
                arn, name=self._next_name(), execution_input=payload
            )
            # ExecutionWorker.start appends its thread to TMP_THREADS before starting it.
            self._threads[first_new].join()
            while execution.exec_status.value == "RUNNING":  # defensive; not expected
                time.sleep(0.0005)
            elapsed = time.perf_counter() - start
            described = execution.to_describe_output()
            if described["status"] != "SUCCEEDED":
                raise RuntimeError(
                    f"moto: {workload.name} ended {described['status']}: {described}"
                )
            history = execution.to_history_output()["events"]
            transitions = sum(1 for event in history if event["type"].endswith("StateEntered"))
            del self._threads[first_new:]  # finished threads; keep moto's list from growing
            return elapsed, transitions, json.loads(described["output"])

        return run


# --- measuring --------------------------------------------------------------------------


@dataclass
class Measurement:
    """Transitions/s of each repetition, and the executions and busy seconds in total."""

    rates: list[float]
    executions: int = 0
    busy: float = 0.0

    @property
    def ms_per_execution(self) -> float:
        return 1000 * self.busy / self.executions if self.executions else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> str:
        """Min-max of the repetitions relative to the median, e.g. '±4%'."""
        med = self.median
        if len(self.rates) < 2 or med == 0:
            return ""
        return f"{(max(self.rates) - min(self.rates)) / 2 / med:.0%}"


def measure(
    runners: dict[str, RunOnce], seconds: float, min_reps: int, batch: float
) -> dict[str, Measurement]:
    """Interleaved repetitions: each round runs every engine for one repetition of >= ``batch``
    s of executions, so that all engines see the same machine noise. Rounds go on until every
    engine has run ``seconds`` and made ``min_reps`` repetitions."""
    results = {name: Measurement([]) for name in runners}
    while any(len(m.rates) < min_reps or m.busy < seconds for m in results.values()):
        for name, run in runners.items():
            # Keep earlier garbage (moto keeps every execution) out of the timed GC passes.
            gc.collect()
            gc.freeze()
            busy = 0.0
            transitions = 0
            while busy < batch:
                elapsed, count, _ = run()
                busy += elapsed
                transitions += count
                results[name].executions += 1
            results[name].busy += busy
            results[name].rates.append(transitions / busy)
    gc.unfreeze()
    return results


def same_json(a: JSON, b: JSON) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _idle_ticks() -> dict[int, int]:
    ticks: dict[int, int] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                ticks[int(name[3:])] = int(fields[3]) + int(fields[4])  # idle + iowait
    return ticks


def idlest_cpu(allowed: set[int]) -> int:
    """The allowed CPU that was idle the longest over a short sample (the machine is shared)."""
    try:
        before = _idle_ticks()
        time.sleep(0.3)
        after = _idle_ticks()
    except (OSError, ValueError, IndexError):
        return min(allowed)
    return max(sorted(allowed), key=lambda cpu: after.get(cpu, 0) - before.get(cpu, 0))


@contextmanager
def pinned_to_one_cpu(cpu: int | None, enabled: bool) -> Iterator[str]:
    """Pin this process (and so moto's threads) to one CPU; yields a description."""
    if not enabled or not hasattr(os, "sched_setaffinity"):
        yield "not pinned"
        return
    before = os.sched_getaffinity(0)
    chosen = cpu if cpu is not None else idlest_cpu(before)
    os.sched_setaffinity(0, {chosen})
    try:
        yield f"pinned to CPU {chosen} (of {len(before)} allowed)"
    finally:
        os.sched_setaffinity(0, before)


def profile_statewright(workload: Workload, seconds: float, top: int) -> str:
    """cProfile the Statewright engine on ``workload`` for about ``seconds``; the top by tottime."""
    run = statewright_runner(workload)
    profiler = cProfile.Profile()
    deadline = time.perf_counter() + seconds
    profiler.enable()
    while time.perf_counter() < deadline:
        run()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --- main -------------------------------------------------------------------------------


def fmt_rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f}"


def fmt_ratio(ours: float, theirs: float | None) -> str:
    return "n/a" if not theirs else f"{ours / theirs:,.0f}x"


Row = tuple[Workload, int, Measurement, dict[str, Measurement]]


def run_workloads(
    moto: MotoBaseline | None, modes: list[str], args: argparse.Namespace
) -> tuple[list[Row], list[str]]:
    """Warm up and cross-check each workload on every engine, then measure them interleaved."""
    rows: list[Row] = []
    warnings: list[str] = []
    for workload in WORKLOADS:
        ours = statewright_runner(workload)
        _, our_count, our_output = ours()
        runners: dict[str, RunOnce] = {}
        for mode in modes:
            assert moto is not None
            run = (
                moto.direct_runner(workload)
                if mode == "direct"
                else moto.boto3_runner(workload, args.poll)
            )
            _, count, output = run()
            if count != our_count:
                warnings.append(
                    f"{workload.name}: moto[{mode}] entered {count} states, statewright {our_count}"
                )
            if not same_json(output, our_output):
                warnings.append(
                    f"{workload.name}: moto[{mode}] output differs from statewright's:\n"
                    f"    moto:        {json.dumps(output)[:300]}\n"
                    f"    statewright: {json.dumps(our_output)[:300]}"
                )
            runners[mode] = run
        measured = measure(
            {"statewright": ours, **runners}, args.seconds, args.min_reps, args.batch
        )
        ours_m = measured.pop("statewright")
        rows.append((workload, our_count, ours_m, measured))
        print(f"  measured {workload.name}", flush=True)
    return rows, warnings


def report(rows: list[Row], modes: list[str], warnings: list[str]) -> None:
    """The table of medians and ratios, the details of each measurement, the goals."""
    print()
    header = f"{'workload':<22}{'statewright tr/s':>18}"
    for mode in modes:
        header += f"{f'moto[{mode}] tr/s':>20}{'ratio':>8}"
    print(header)
    for workload, _, ours, theirs in rows:
        line = f"{workload.name:<22}{fmt_rate(ours.median):>18}"
        for mode in modes:
            line += f"{fmt_rate(theirs[mode].median):>20}{fmt_ratio(ours.median, theirs[mode].median):>8}"
        print(line)
    print()
    for workload, count, ours, theirs in rows:
        print(f"  {workload.name}: {count} transitions per execution")
        for label, m in [("statewright", ours), *((f"moto[{k}]", v) for k, v in theirs.items())]:
            print(
                f"    {label:<13} {len(m.rates):>3} reps, {m.executions:>5} executions, "
                f"{m.ms_per_execution:9.2f} ms/execution, reps within ±{m.spread or '0%'} of median"
            )
    worst_rate = min(ours.median for _, _, ours, _ in rows)
    verdict = (
        f"goal >= {GOAL_RATE:,} tr/s on one core: {'met' if worst_rate >= GOAL_RATE else 'NOT met'}"
    )
    if modes:
        worst_ratio = min(ours.median / theirs[modes[0]].median for _, _, ours, theirs in rows)
        verdict += f"; goal >= {GOAL_RATIO}x moto[{modes[0]}]: {'met' if worst_ratio >= GOAL_RATIO else 'NOT met'}"
    print(f"  {verdict}")
    for warning in warnings:
        print(f"WARNING: {warning}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="busy seconds per workload and engine (2)"
    )
    parser.add_argument("--min-reps", type=int, default=5, help="minimum repetitions (5)")
    parser.add_argument(
        "--batch", type=float, default=0.25, help="minimum busy seconds per repetition (0.25)"
    )
    parser.add_argument(
        "--moto",
        choices=("both", "direct", "boto3", "none"),
        default="both",
        help="how to drive the moto baseline (both; the ratio goal uses the first: direct)",
    )
    parser.add_argument(
        "--poll", type=float, default=0.002, help="describe_execution poll interval, boto3 mode"
    )
    parser.add_argument(
        "--cpu", type=int, help="the CPU to pin to (default: the idlest allowed one)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    parser.add_argument(
        "--profile", action="store_true", help="then cProfile Statewright on each workload"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    moto: MotoBaseline | None = None
    moto_note = "moto baseline: not run (--moto none)"
    if args.moto != "none":
        try:
            moto = MotoBaseline()
            moto_note = (
                f"moto {moto.version} (boto3 {moto.boto3_version}), Step Functions parser backend"
            )
        except ImportError as error:
            moto_note = f"moto baseline unavailable ({error}): pip install 'moto[stepfunctions]'"
    modes = [] if moto is None else (["direct", "boto3"] if args.moto == "both" else [args.moto])

    with pinned_to_one_cpu(args.cpu, not args.no_pin) as pin_note:
        print(
            f"python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}"
        )
        print(moto_note)
        print(
            f"{pin_note}; >= {args.seconds:g} s and >= {args.min_reps} reps of >= {args.batch:g} s per engine"
        )
        try:
            rows, warnings = run_workloads(moto, modes, args)
        finally:
            if moto is not None:
                moto.close()
        report(rows, modes, warnings)
        if args.profile:
            for workload in WORKLOADS:
                print(f"\n--- cProfile, statewright, {workload.name} (by own time) ---")
                print(profile_statewright(workload, max(args.seconds, 1.0), 25))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The container task's pure parts: Parameters to ContainerSpec, the log stream's demux and
caps, the output and error shapes, the attempt's container name."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.runners.container import (
    MAX_STDOUT_BYTES,
    STDERR_TAIL_BYTES,
    ContainerSpec,
    Exited,
    container_name,
    task_output,
)
from service.runners.docker import Logs
from service.runners.http import TaskFailure

IMAGE = "localhost/busybox:test"


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_every_parameter() -> None:
    spec = ContainerSpec.parse(
        {
            "Image": f" {IMAGE} ",
            "Command": ["sh", "-c", "cat"],
            "Entrypoint": ["/bin/env"],
            "Environment": {"A": "1", "B": 2.5},
            "WorkingDir": "/tmp",
            "User": "1000:1000",
            "MemoryMiB": 64,
            "CpuCount": 0.5,
            "Network": "host",
            "TimeoutSeconds": 10,
            "Input": {"x": [1, "é"]},
        },
        networks=("none", "host"),
    )
    assert spec == ContainerSpec(
        image=IMAGE,
        command=("sh", "-c", "cat"),
        entrypoint=("/bin/env",),
        environment=(("A", "1"), ("B", "2.5")),
        working_dir="/tmp",
        user="1000:1000",
        memory_mib=64,
        cpu_count=0.5,
        network="host",
        timeout_seconds=10.0,
        input='{"x":[1,"é"]}'.encode(),
    )
    assert spec.stdin == spec.input


def test_defaults_no_stdin_and_input_file() -> None:
    spec = ContainerSpec.parse({"Image": IMAGE})
    assert (spec.network, spec.stdin, spec.command, spec.timeout_seconds) == (
        "none",
        None,
        None,
        None,
    )
    to_file = ContainerSpec.parse({"Image": IMAGE, "Input": "text", "InputFile": "/in/x.json"})
    assert (to_file.input, to_file.input_file, to_file.stdin) == (b'"text"', "/in/x.json", None)
    # Input null is still input: the container reads "null".
    assert ContainerSpec.parse({"Image": IMAGE, "Input": None}).stdin == b"null"


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ("run busybox", "Parameters must be an object"),
        ({}, "Image must name an image"),
        ({"Image": ""}, "Image must name an image"),
        ({"Image": IMAGE, "Cmd": ["true"]}, "unknown field(s) Cmd"),
        ({"Image": IMAGE, "Command": "true"}, "Command must be a list of strings"),
        ({"Image": IMAGE, "Entrypoint": [1]}, "Entrypoint must be a list of strings"),
        ({"Image": IMAGE, "Environment": ["A=1"]}, "Environment must be an object"),
        ({"Image": IMAGE, "Environment": {"A=B": "1"}}, "is not an environment variable name"),
        ({"Image": IMAGE, "Environment": {"A": True}}, "A must be a string"),
        ({"Image": IMAGE, "Network": "bridge"}, "Network 'bridge' is not allowed"),
        ({"Image": IMAGE, "MemoryMiB": 0}, "MemoryMiB must be a positive number"),
        ({"Image": IMAGE, "MemoryMiB": 1.5}, "whole number of MiB"),
        ({"Image": IMAGE, "CpuCount": "2"}, "CpuCount must be a positive number"),
        ({"Image": IMAGE, "TimeoutSeconds": -1}, "TimeoutSeconds must be a positive number"),
        ({"Image": IMAGE, "WorkingDir": 3}, "WorkingDir must be a non-empty string"),
        ({"Image": IMAGE, "InputFile": "/x"}, "Input is missing"),
        ({"Image": IMAGE, "Input": 1, "InputFile": "x.json"}, "InputFile must be an absolute"),
    ],
)
def test_bad_parameters_say_what_to_fix(parameters: Any, words: str) -> None:
    with pytest.raises(TaskFailure) as failure:
        ContainerSpec.parse(parameters)
    assert failure.value.error == "States.Runtime"
    assert words in failure.value.cause


def test_the_name_follows_the_key() -> None:
    key = "arn:aws:states:us-east-1:123456789012:execution:m:e:3"
    assert container_name(key) == container_name(key)
    assert container_name(key) != container_name(key[:-1] + "4")
    assert container_name(key).startswith("statewright-") and len(container_name(key)) == 36


@given(
    parts=st.lists(st.tuples(st.sampled_from([1, 2]), st.binary(max_size=300)), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
)
def test_logs_demux_however_the_stream_is_cut(
    parts: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(frame(s, p) for s, p in parts)
    logs = Logs()
    at, turn = 0, 0
    while at < len(stream):
        size = cuts[turn % len(cuts)]
        logs.feed(stream[at : at + size])
        at, turn = at + size, turn + 1
    assert bytes(logs.stdout) == b"".join(p for s, p in parts if s == 1)
    assert bytes(logs.stderr) == b"".join(p for s, p in parts if s == 2)[-STDERR_TAIL_BYTES:]


def test_logs_keep_bounded_memory() -> None:
    logs = Logs()
    for _ in range(100):
        logs.feed(frame(1, b"o" * 10_000) + frame(2, b"e" * 10_000))
    assert len(logs.stdout) == MAX_STDOUT_BYTES and logs.stdout_bytes == 1_000_000
    assert len(logs.stderr) == STDERR_TAIL_BYTES


def test_output_and_errors() -> None:
    spec = ContainerSpec.parse({"Image": IMAGE, "TimeoutSeconds": 5})
    ok = task_output(spec, Exited(0, b'{"a": 1}\n', 9, b"note\n", 0.12345))
    assert ok == {"ExitCode": 0, "Stdout": {"a": 1}, "StderrTail": "note\n", "Duration": 0.123}
    assert task_output(spec, Exited(0, b"hi\n", 3, b"", 0))["Stdout"] == "hi\n"
    assert task_output(spec, Exited(0, b"", 0, b"", 0))["Stdout"] == ""
    with pytest.raises(TaskFailure) as failed:
        task_output(spec, Exited(2, b"", 0, b"bad input\n", 0))
    assert (failed.value.error, failed.value.cause) == ("Container.ExitCode.2", "bad input\n")
    with pytest.raises(TaskFailure) as timed_out:
        task_output(spec, Exited(137, b"", 0, b"", 5, timed_out=True))
    assert timed_out.value.error == "Container.Timeout"
    with pytest.raises(TaskFailure) as too_much:
        task_output(spec, Exited(0, b"x" * MAX_STDOUT_BYTES, MAX_STDOUT_BYTES + 1, b"", 0))
    assert too_much.value.error == "States.DataLimitExceeded"

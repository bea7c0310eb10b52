"""The HTTP task's request building and outbound rules, as pure functions."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from service.runners.http import Outbound, TaskFailure, build_request


def test_a_json_body_query_and_headers() -> None:
    request = build_request(
        {
            "ApiEndpoint": "https://api.example.com/v1/orders",
            "Method": "post",
            "Headers": {"X-Trace": "abc", "X-Count": 3},
            "QueryParameters": {"page": 2, "tag": ["a", "b"]},
            "RequestBody": {"id": 7, "name": "Ada"},
        }
    )
    assert request.method == "POST"
    assert request.url == "https://api.example.com/v1/orders"
    assert ("X-Trace", "abc") in request.headers and ("X-Count", "3") in request.headers
    assert ("Content-Type", "application/json; charset=UTF-8") in request.headers
    assert request.params == [("page", "2"), ("tag", "a"), ("tag", "b")]
    assert json.loads(request.content or b"") == {"id": 7, "name": "Ada"}


def test_a_string_body_is_sent_as_text() -> None:
    request = build_request({"ApiEndpoint": "http://h/x", "Method": "PUT", "RequestBody": "hello"})
    assert request.content == b"hello"
    assert ("Content-Type", "text/plain; charset=UTF-8") in request.headers


@pytest.mark.parametrize(
    ("array_format", "pairs"),
    [
        ("INDICES", [("a[0]", "1"), ("a[1]", "2")]),
        ("REPEAT", [("a", "1"), ("a", "2")]),
        ("COMMAS", [("a", "1,2")]),
        ("BRACKETS", [("a[]", "1"), ("a[]", "2")]),
    ],
)
def test_form_encoding_of_arrays(array_format: str, pairs: list[tuple[str, str]]) -> None:
    request = build_request(
        {
            "ApiEndpoint": "http://h/x",
            "Method": "POST",
            "RequestBody": {"name": "x y", "a": [1, 2]},
            "Transform": {
                "RequestBodyEncoding": "URL_ENCODED",
                "RequestEncodingOptions": {"ArrayFormat": array_format},
            },
        }
    )
    assert urllib.parse.parse_qsl((request.content or b"").decode()) == [("name", "x y"), *pairs]


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"Method": "GET"}, "ApiEndpoint must be a URL"),
        ({"ApiEndpoint": "file:///etc/passwd", "Method": "GET"}, "http or https URL"),
        ({"ApiEndpoint": "http://h", "Method": "TRACE"}, "Method must be one of"),
        ({"ApiEndpoint": "http://h", "Method": "GET", "Headers": {"Host": "x"}}, "'Host'"),
        ({"ApiEndpoint": "http://h", "Method": "GET", "Headers": {"X-Amz-Date": "x"}}, "X-Amz"),
        (
            {"ApiEndpoint": "http://h", "Method": "GET", "Headers": {"Authorization": "x"}},
            "'Authorization'",
        ),
        (
            {
                "ApiEndpoint": "http://h",
                "Method": "POST",
                "RequestBody": [1],
                "Transform": {"RequestBodyEncoding": "URL_ENCODED"},
            },
            "must be an object",
        ),
        ("not an object", "Parameters must be an object"),
    ],
)
def test_parameters_that_make_no_request_are_a_runtime_error(
    parameters: object, fragment: str
) -> None:
    with pytest.raises(TaskFailure) as failure:
        build_request(parameters)
    assert failure.value.error == "States.Runtime"
    assert fragment in failure.value.cause


@pytest.mark.parametrize(
    ("allow", "host", "address", "allowed"),
    [
        ("", "api.example.com", "93.184.216.34", True),  # public
        ("", "metadata", "169.254.169.254", False),  # cloud metadata
        ("", "h", "fd00:ec2::254", False),
        ("", "h", "127.0.0.1", False),  # loopback needs the allow-list
        ("", "h", "::ffff:127.0.0.1", False),  # also when mapped into IPv6
        ("", "h", "10.1.2.3", False),  # private
        ("", "h", "192.168.1.1", False),
        ("127.0.0.1", "h", "127.0.0.1", True),
        ("10.0.0.0/8", "h", "10.1.2.3", True),
        ("internal.example", "internal.example", "10.9.9.9", True),  # by host name
        ("internal.example", "other.example", "10.9.9.9", False),
        ("169.254.169.254", "h", "169.254.169.254", True),  # only when listed
    ],
)
def test_outbound_rules(allow: str, host: str, address: str, allowed: bool) -> None:
    rules = Outbound.parse(allow.split(","))
    if allowed:
        rules.check(host, address)
    else:
        with pytest.raises(TaskFailure) as failure:
            rules.check(host, address)
        assert failure.value.error == "States.Http.DestinationNotAllowed"
        assert address in failure.value.cause

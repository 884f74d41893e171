"""A property-based fuzz of every route in the server's OpenAPI schema (issue 12), against a
real port on 127.0.0.1: path and query parameters and JSON bodies drawn from strategies
derived from the schema the server publishes at ``/openapi.json``, mixed with values of the
wrong type, unknown keys and raw bytes. Not one answer may be a 500 (nor any 5xx but the
protocol's 503 for a model the fuzz unloaded itself), and the server stays up.

Why hypothesis strategies of our own and not schemathesis: schemathesis 4.32.5 does install
from the index (a pip dry run on 2026-11-30: five packages beyond the dev extra, hypothesis
kept), but the schema here is small (one request model, string path and query parameters)
and the walker below is some sixty lines that keep in the test what schemathesis would need
hooks for: the model names the server knows mixed into the path parameters, the model
control routes (which unload) fuzzed last, the protocol's 503 for an unloaded model told
apart from a 500, and the examples per route bounded for CI. ``TENSORFAB_FUZZ_EXAMPLES`` sets
the examples per route (CI: 15); ``benchmarks/serve_hardening.py --fuzz-examples N`` runs
the long fuzz.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzjson import any_json
from tensorfab.serve import BackgroundServer, Bind, ServerOptions

EXAMPLES = int(os.environ.get("TENSORFAB_FUZZ_EXAMPLES", "15"))
ANY_JSON = any_json(max_leaves=10)
# Path parameters the server knows, beside any text: the models loaded, one that fails to
# load, one that is not there, and versions.
KNOWN = {"name": ["digits", "digits-torch", "broken", "nothing"], "version": ["1", "2", "0"]}


def _typed(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the schema's own type (its parts drawn by :func:`from_schema`)."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        known = st.fixed_dictionaries(
            {k: from_schema(v, components) for k, v in props.items() if k in required},
            optional={k: from_schema(v, components) for k, v in props.items() if k not in required},
        )
        unknown = st.just({}) | st.dictionaries(st.text(max_size=5), ANY_JSON, max_size=1)
        return st.builds(lambda a, b: {**b, **a}, known, unknown)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components), max_size=4)
    if kind == "integer":
        low = schema.get("minimum", -(2**63))
        return st.integers(low, 2**64) | st.integers(-(2**70), 2**70)
    simple = {"number": st.floats(), "string": st.text(max_size=10), "boolean": st.booleans(),
              "null": st.none()}  # fmt: skip
    return simple.get(kind, ANY_JSON)


def from_schema(schema: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A JSON Schema (as OpenAPI 3.1 writes it) as a strategy: values that fit it three
    times in four, any JSON the fourth (a wrong type in that place)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: from_schema(components[name], components))
    if "enum" in schema:
        fitting = st.sampled_from(schema["enum"])
    elif "anyOf" in schema or "oneOf" in schema:
        fitting = st.one_of(
            [from_schema(s, components) for s in schema.get("anyOf", schema.get("oneOf"))]
        )
    else:
        fitting = _typed(schema, components)
    return st.one_of(fitting, fitting, fitting, ANY_JSON)


def _parameter(param: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[str]:
    """A path or query parameter as the text of a URL."""
    text = st.text(min_size=1, max_size=12) | from_schema(param.get("schema", {}), components).map(
        json.dumps
    )
    known = KNOWN.get(param["name"])
    return (st.sampled_from(known) | text) if known else text


def _body(operation: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    declared = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if declared:
        fitting = from_schema(declared["schema"], components)
        return fitting.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64)
    return st.none() | st.binary(max_size=64) | ANY_JSON.map(lambda v: json.dumps(v).encode())


def calls(
    path: str, method: str, operation: dict[str, Any], components: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Requests to one operation of the schema: its URL (path parameters filled in, quoted),
    its query and its body."""
    params = operation.get("parameters", [])
    in_path = {p["name"]: _parameter(p, components) for p in params if p["in"] == "path"}
    in_query = {p["name"]: _parameter(p, components) for p in params if p["in"] == "query"}

    def url(values: dict[str, str]) -> str:
        return path.format(**{k: quote(v, safe="") for k, v in values.items()})

    return st.fixed_dictionaries(
        {
            "method": st.just(method.upper()),
            "url": st.fixed_dictionaries(in_path).map(url),
            "params": st.fixed_dictionaries({}, optional=in_query),
            "content": _body(operation, components),
        }
    )


def _acceptable(answer: httpx.Response) -> bool:
    """Below 500, or the protocol's 503 for a model the fuzz itself unloaded."""
    if answer.status_code < 500:
        return True
    error = answer.json().get("error", "") if answer.status_code == 503 else ""
    return error.endswith(("is not loaded", "is not ready"))


@pytest.fixture(scope="module")
def fuzzed(serve_repo: Path, free_port) -> Iterator[BackgroundServer]:
    """A server of its own: the fuzz loads and unloads its models."""
    options = ServerOptions(repository=serve_repo, models=["digits", "digits-torch"],
                            model_control="explicit", body_timeout_s=2)  # fmt: skip
    with BackgroundServer(options, Bind(port=free_port(), header_timeout_s=2)) as running:
        yield running


def test_every_route_of_the_openapi_schema_fuzzed_gets_no_500(fuzzed: BackgroundServer) -> None:
    schema = httpx.get(f"{fuzzed.url}/openapi.json").json()
    components = schema.get("components", {}).get("schemas", {})
    operations = [(p, m, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    operations.sort(key=lambda o: "/repository/models/" in o[0])  # unloads last: infer first
    app = fuzzed.server.config.app.app
    routes = {(r.path, m.lower()) for r in app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert {(p, m) for p, m, _ in operations} == routes  # every route, none left out
    assert "requestBody" in schema["paths"]["/v2/models/{name}/infer"]["post"]
    seen: dict[int, int] = {}
    with httpx.Client(base_url=fuzzed.url, timeout=30) as http:
        for path, method, operation in operations:

            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(call=calls(path, method, operation, components))
            def fuzz(call: dict[str, Any]) -> None:
                answer = http.request(**call)
                seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
                assert _acceptable(answer), (call, answer.text[:300])

            fuzz()
            assert http.get("/v2/health/live").status_code == 200, (path, method)
    assert fuzzed.server.config.app.tally.errors == 0  # no exception reached the guard
    assert sum(seen.values()) >= len(operations) * min(EXAMPLES, 5), seen
    assert 200 in seen and 400 in seen and 404 in seen, seen  # the fuzz reached past refusals

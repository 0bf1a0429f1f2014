"""Contract-test helpers: the OpenAPI document, a checker that holds real responses to it, real servers.

`contract.check(response, method, path_template)` asserts that a `requests` response is documented for
that operation (status code, media type, required headers with their schemas) and that its body validates
against the documented schema. Schemas are JSON Schema 2020-12 (OpenAPI 3.1), validated with `jsonschema`;
`$ref`s resolve against the whole document through a `referencing` registry.

A streamed media type (NDJSON, Server-Sent Events) documents the schema of each of its items in the
extension `x-greenpool-item-schema` (OpenAPI 3.2's `itemSchema`); `check` splits such a body into its items
(`stream_items`), strictly, and validates every one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
import referencing
import requests
import serverkit
import yaml
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "service" / "openapi.yaml"
SPEC_URI = "urn:greenpool:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def load_spec() -> dict[str, Any]:
    """The OpenAPI document as data."""
    return yaml.safe_load(SPEC_PATH.read_text())


def pointer_escape(segment: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return segment.replace("~", "~0").replace("/", "~1")


def media_type_of(content_type: str | None) -> str:
    """`application/json; charset=UTF-8` → `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def ndjson_items(text: str) -> list[Any]:
    """The JSON values of an NDJSON body, one per line; blank lines (heartbeats) are skipped."""
    assert text == "" or text.endswith("\n"), f"an NDJSON body ends with a newline: {text[-200:]!r}"
    items = []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if line.strip() == "":
            assert line == "", f"line {number}: a heartbeat is an empty line, got {line!r}"
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            raise AssertionError(f"NDJSON line {number} is not JSON ({exc}): {line[:500]!r}") from None
    return items


def sse_events(text: str) -> list[dict[str, Any]]:
    """The events of a text/event-stream body as `{id?, event, data}` with `data` decoded from JSON.

    Comment lines (heartbeats) are skipped; every event must end with a blank line, every field line must
    be `name: value` with a field SSE defines, and `data` must be one line of JSON.
    """
    assert text == "" or text.endswith("\n\n"), f"an SSE body ends with a blank line: {text[-200:]!r}"
    events, fields = [], {}
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if line == "":
            if fields:
                events.append(fields)
            fields = {}
        elif line.startswith(":"):
            continue
        else:
            name, sep, value = line.partition(": ")
            assert sep and name in ("id", "event", "data", "retry"), f"SSE line {number}: {line[:500]!r}"
            assert name not in fields, f"SSE line {number}: a second {name!r} field in one event"
            if name == "data":
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    raise AssertionError(f"SSE line {number}: data is not JSON ({exc}): {value[:500]!r}") from None
            fields[name] = value
    assert not fields, "the last SSE event is not terminated by a blank line"
    return events


def stream_items(media_type: str, text: str) -> list[Any]:
    """The items of a streamed body: NDJSON values or SSE events."""
    return ndjson_items(text) if media_type == NDJSON else sse_events(text)


class Contract:
    """The OpenAPI document and the checks that hold real responses to it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = DRAFT202012.create_resource(spec)
        self.registry = referencing.Registry().with_resource(SPEC_URI, resource)

    # -- finding things in the document -----------------------------------------------------------------
    def resolve(self, obj: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follow local `$ref`s of a non-schema object (response, header, parameter); returns (object, pointer)."""
        while "$ref" in obj:
            ref = obj["$ref"]
            assert ref.startswith("#/"), f"only local $refs are expected, got {ref!r}"
            pointer = ref[1:]
            obj = self.spec
            for token in pointer.split("/")[1:]:
                obj = obj[token.replace("~1", "/").replace("~0", "~")]
        return obj, pointer

    def operation(self, method: str, path: str) -> tuple[dict[str, Any], str]:
        """The operation object for `method` on path template `path`, and its JSON pointer."""
        item = self.spec["paths"].get(path)
        assert item is not None, f"path {path} is not in openapi.yaml"
        op = item.get(method.lower())
        assert op is not None, f"{method.upper()} {path} is not in openapi.yaml"
        return op, f"/paths/{pointer_escape(path)}/{method.lower()}"

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(METHOD, path, operation) for every operation in the document."""
        for path, item in self.spec["paths"].items():
            for method in HTTP_METHODS:
                if method in item:
                    yield method.upper(), path, item[method]

    def validator(self, pointer: str) -> jsonschema.Draft202012Validator:
        """A validator for the schema at `pointer` in the document (its `$ref`s resolve in the document)."""
        schema = {"$ref": f"{SPEC_URI}#{quote(pointer, safe='/~')}"}
        return jsonschema.Draft202012Validator(
            schema, registry=self.registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )

    def schema_errors(self, pointer: str, instance: Any) -> list[str]:
        """Every way `instance` fails the schema at `pointer` (empty if it validates)."""
        errors = self.validator(pointer).iter_errors(instance)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]

    def request_body_valid(self, method: str, path: str, body: Any) -> bool:
        """Whether `body` satisfies the operation's documented application/json request body schema."""
        op, op_pointer = self.operation(method, path)
        assert "requestBody" in op, f"{method} {path} documents no request body"
        pointer = f"{op_pointer}/requestBody/content/application~1json/schema"
        return not self.schema_errors(pointer, body)

    # -- checking a real response -----------------------------------------------------------------------
    def check(self, response: requests.Response, method: str, path: str, context: str = "") -> None:
        """Assert `response` to `method path` (a path template) is exactly as the document says."""
        op, op_pointer = self.operation(method, path)
        where = f"{method} {path} → {response.status_code} ({response.request.method} {response.url})"
        responses = op["responses"]
        code = str(response.status_code)
        if code in responses:
            key = code
        elif f"{code[0]}XX" in responses:
            key = f"{code[0]}XX"
        elif "default" in responses:
            key = "default"
        else:
            raise AssertionError(
                f"{where}: status {code} is not documented (documented: {sorted(responses)})\n"
                f"body: {response.text[:2000]}\n{context}"
            )
        doc, pointer = self.resolve(responses[key], f"{op_pointer}/responses/{key}")
        self.check_documented(response, doc, pointer, where, context)

    def check_documented(
        self, response: requests.Response, doc: dict[str, Any], pointer: str, where: str, context: str = ""
    ) -> None:
        """Assert `response` matches the response object `doc` (found at `pointer`): headers, media type, body."""
        for name, header in doc.get("headers", {}).items():
            header, header_pointer = self.resolve(header, f"{pointer}/headers/{pointer_escape(name)}")
            value = response.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{where}: required header {name} is missing\n{context}"
                continue
            errors = self.schema_errors(f"{header_pointer}/schema", value)
            assert not errors, f"{where}: header {name}: {value!r} does not fit its schema: {errors}\n{context}"
        content = doc.get("content")
        if not content:
            assert not response.content, f"{where}: undocumented body {response.text[:500]!r}\n{context}"
            return
        media_type = media_type_of(response.headers.get("Content-Type"))
        assert media_type in content, (
            f"{where}: Content-Type {response.headers.get('Content-Type')!r} is not documented "
            f"(documented: {sorted(content)})\n{context}"
        )
        if media_type in ("application/json", "application/problem+json"):
            try:
                body = response.json()
            except ValueError as exc:
                raise AssertionError(f"{where}: the body is not JSON ({exc}): {response.text[:500]!r}") from None
        elif media_type == "application/yaml":
            body = yaml.safe_load(response.text)  # the document's schema describes the parsed document
        else:
            body = response.text
        media_pointer = f"{pointer}/content/{pointer_escape(media_type)}"
        errors = self.schema_errors(f"{media_pointer}/schema", body)
        assert not errors, (
            f"{where}: the body does not fit its schema:\n  "
            + "\n  ".join(errors)
            + f"\nbody: {json.dumps(body)[:2000] if not isinstance(body, str) else body[:500]}\n{context}"
        )
        if "x-greenpool-item-schema" in content[media_type]:
            for index, item in enumerate(stream_items(media_type, body)):
                errors = self.schema_errors(f"{media_pointer}/x-greenpool-item-schema", item)
                assert not errors, (
                    f"{where}: item {index} of the stream does not fit its schema:\n  "
                    + "\n  ".join(errors)
                    + f"\nitem: {json.dumps(item)[:2000]}\n{context}"
                )
        if media_type == "application/problem+json":
            assert body["status"] == response.status_code, (
                f"{where}: the problem's status member is {body['status']!r}, not the HTTP status "
                f"{response.status_code} (RFC 9457 §3.1.2)\nbody: {json.dumps(body)}\n{context}"
            )


# -- real servers ---------------------------------------------------------------------------------------
class Server(serverkit.Server):
    """A real server (serverkit) whose `request` fails the test, with the server's log, on a 5xx but 503."""

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; fails the test with the server's log if the server answers 500 or more."""
        response = super().request(method, path, **kwargs)
        if response.status_code >= 500 and response.status_code != 503:
            time.sleep(0.2)  # let the traceback reach the log
            pytest.fail(
                f"{method} {path} → {response.status_code}: {response.text[:2000]}\n--- server log ---\n{self.log()}"
            )
        return response


def start_server(log_dir: Path, env: dict[str, str], boot_timeout: float = 20.0) -> Server:
    """Start gunicorn with GreenWorker (serverkit, a 3 s graceful timeout); return once /healthz answers 200."""
    return serverkit.start_server(log_dir, env, ["--graceful-timeout", "3"], boot_timeout=boot_timeout, cls=Server)

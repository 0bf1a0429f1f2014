"""Reading request input: JSON bodies within a size limit, and typed query parameters."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import falcon
import orjson

from ...encoding import dumps
from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

_INTEGER = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts '²', which int() refuses


def read_json_object(req: falcon.Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object: 415 unless JSON, 413 over `max_bytes`, 400 if malformed, 422 if not an object."""
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json (got {req.content_type or 'no Content-Type'})")
    length = req.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the body is {length} bytes; the limit is {max_bytes}", limit=max_bytes, unit="bytes")
    # bounded_stream trusts Content-Length; a chunked body has none, and the server decodes it in req.stream
    stream = req.bounded_stream if length is not None else req.stream
    try:
        raw = stream.read(max_bytes + 1)
    except Exception as exc:  # the server's reader found the body malformed (chunking) or cut short
        raise BadRequest(f"the request body could not be read: {exc}") from None
    req.context.body_bytes = len(raw)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the body exceeds the limit of {max_bytes} bytes", limit=max_bytes, unit="bytes")
    try:
        body = _loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    _check_document(raw, body)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [{"field": "", "message": "expected an object"}])
    return body


def _loads(raw: bytes) -> Any:
    """orjson's parse (several times faster on a large pile); what it refuses (a UTF-16 body, integers beyond
    64 bits, NaN, lone surrogates, bad JSON) goes through `json.loads`, whose answers and errors stand."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


#: How deeply arrays and objects may nest in a request body (the body itself is level 1).
MAX_JSON_DEPTH = 64
#: A surrogate code point in the raw body: escaped (`\\ud800`) or encoded, which `json.loads` lets through.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _too_deep() -> BadRequest:
    detail = f"the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
    return BadRequest(detail, limit=MAX_JSON_DEPTH)


def _check_document(raw: bytes, body: Any) -> None:
    """400 for a body nested deeper than MAX_JSON_DEPTH; 422 naming the first member or string holding a
    lone surrogate (`"\\ud800"`: valid JSON, but no UTF-8 encoder can write it back out, so such a string
    would poison every representation of the record that holds it). The tree is walked only when the raw
    bytes could hold either: ordinary bodies cost two `count`s and a regex search."""
    deep = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    odd = _SURROGATE.search(raw) is not None
    if not (deep or odd):
        return
    todo: list[tuple[Any, str, int]] = [(body, "", 1)]
    while todo:
        value, path, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                child = ""  # field paths are only needed to name a surrogate
                if odd:
                    child = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
                    if isinstance(key, str) and _lone_surrogate(key):
                        _refuse_surrogate(child)
                todo.append((item, child, depth + 1))
        elif odd and isinstance(value, str) and _lone_surrogate(value):
            _refuse_surrogate(path)


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _refuse_surrogate(path: str) -> None:
    field = path.encode("utf-8", "backslashreplace").decode()
    message = "holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not a Unicode character"
    raise ValidationFailed(f"{field or 'the body'} {message}", [{"field": field, "message": message}])


def check_args_size(req: falcon.Request, limit: int, specs: list[Any], fields: list[str]) -> None:
    """413 naming the first job whose `args`, serialized as compact JSON, exceed `limit` bytes."""
    if getattr(req.context, "body_bytes", limit + 1) <= limit:
        return  # a body within the limit cannot hold args beyond it
    for spec, field in zip(specs, fields, strict=True):
        size = len(dumps(spec.args))
        if size > limit:
            raise PayloadTooLarge(
                f"{field} is {size} bytes as JSON; the limit is {limit}", limit=limit, unit="bytes", field=field
            )



def query_float(req: falcon.Request, name: str, low: float, high: float) -> float | None:
    """An optional number parameter within [low, high]; 400 naming it otherwise."""
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise BadRequest(f"query parameter {name!r} must be a number from {low:g} to {high:g}", parameter=name)
    return value


def query_int(req: falcon.Request, name: str, low: int, high: int, default: int) -> int:
    """An integer parameter within [low, high] (default when absent); 400 naming it otherwise."""
    raw = req.get_param(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"query parameter {name!r} must be an integer from {low} to {high}", parameter=name)
    return int(raw)

"""Reading request input: JSON bodies within a size limit, and typed query parameters."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import falcon

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

_INTEGER = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts '²', which int() refuses


def read_json_object(req: falcon.Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object: 415 unless JSON, 413 over `max_bytes`, 400 if malformed, 422 if not an object."""
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json (got {req.content_type or 'no Content-Type'})"
        )
    length = req.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge(f"the body is {length} bytes; the limit is {max_bytes}", limit=max_bytes)
    # bounded_stream trusts Content-Length; a chunked body has none, and the server decodes it in req.stream
    stream = req.bounded_stream if length is not None else req.stream
    raw = stream.read(max_bytes + 1)
    req.context.body_bytes = len(raw)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the body exceeds the limit of {max_bytes} bytes", limit=max_bytes)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", [{"field": "", "message": "expected an object"}])
    return body


def check_args_size(req: falcon.Request, limit: int, specs: list[Any], fields: list[str]) -> None:
    """413 naming the first job whose `args`, serialized as compact JSON, exceed `limit` bytes."""
    if getattr(req.context, "body_bytes", limit + 1) <= limit:
        return  # a body within the limit cannot hold args beyond it
    for (_task, args, _timeout), field in zip(specs, fields, strict=True):
        size = len(_compact(args).encode())
        if size > limit:
            raise PayloadTooLarge(f"{field} is {size} bytes as JSON; the limit is {limit}", limit=limit, field=field)


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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

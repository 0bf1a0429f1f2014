"""JSON as the API sends it: compact UTF-8, by orjson (about ten times faster than `json.dumps` on our
documents). Shared by every layer, importing none: the API encodes its responses with `dumps`, and a job's
result is measured against `GREENPOOL_MAX_RESULT_BYTES` as `len(dumps(result))`, the bytes it takes on the
wire."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps"]

_fallback = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_escaped = json.JSONEncoder(separators=(",", ":")).encode


def dumps(document: Any) -> bytes:
    """`document` as compact UTF-8 JSON; what orjson refuses (integers beyond 64 bits, nesting beyond 255
    levels, lone surrogates) goes through json, which writes a lone surrogate as its `\\ud800` escape (a
    task may return one), so that no record ever fails to serialise."""
    try:
        return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        try:
            return _fallback(document).encode()
        except UnicodeEncodeError:
            return _escaped(document).encode()

"""Structured logs: one JSON object per line on stderr, for the service's and gunicorn's own records."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "logger", "msg", ...extra fields}` on one line.

    A line is written for every request and job event at `info`, so this is on the hot path: the timestamp's
    seconds are formatted once per second, the caller lookup is off (see `configure`), and the
    line is encoded by orjson (json.dumps for what orjson refuses, e.g. integers beyond 64 bits)."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        if not fields.keys() <= _RESERVED:  # extra fields, in the order they were given
            for key, value in fields.items():
                if key not in _RESERVED and not key.startswith("_"):
                    entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return json.dumps(entry, default=str)


def configure(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines at `level` (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:  # ours, or the one gunicorn's logconfig_dict installed: one line per record
        if getattr(handler, "_greenpool", False) or isinstance(handler.formatter, JsonFormatter):
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler._greenpool = True  # type: ignore[attr-defined]
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Our lines do not carry the caller's file and line: skip walking the stack for them on every record.
    logging._srcfile = None  # type: ignore[attr-defined]

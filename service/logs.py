"""Structured logs: one JSON object per line on stderr, for the service's and gunicorn's own records.

In a worker process (`buffer_lines()`), info lines are written in batches: a write when 64 KiB have gathered,
0.2 s after the oldest waiting line (checked as lines come) or at the supervisor's next tick (≤ 1 s), and at
once for a warning or worse and at exit. A `kill -9` can lose the last second of info lines, never a warning.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

import orjson

_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_BATCH_BYTES = 64 * 1024
_BATCH_SECONDS = 0.2
_buffering = False


class JsonFormatter(logging.Formatter):
    """Formats a record as `{"ts", "level", "logger", "msg", ...extra fields}` on one line.

    On the hot path (a line per request and per finished job at `info`): the timestamp's seconds are formatted
    once per second, the caller lookup is off (see `configure`), and the line is encoded by orjson (json.dumps
    for what orjson refuses, e.g. integers beyond 64 bits)."""

    _second = -1
    _stamp = ""

    def timestamp(self, created: float) -> str:
        """RFC 3339 UTC with milliseconds, e.g. 2026-12-03T07:00:00.123Z."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    @staticmethod
    def encode(entry: dict[str, Any]) -> str:
        """`entry` as one line of JSON."""
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            return json.dumps(entry, default=str)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.timestamp(record.created),
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
        return self.encode(entry)


class JsonLines(logging.StreamHandler):
    """JSON lines on a stream (stderr), written in batches once `buffer_lines()` was called (see the module)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.formatter: JsonFormatter = JsonFormatter()
        self._lines: list[str] = []
        self._size = 0
        self._oldest = 0.0

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 (logging's name)
        """Only a JsonFormatter: the direct lines of `info()` are formatted by it too."""
        super().setFormatter(fmt if isinstance(fmt, JsonFormatter) else JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record), record.levelno)
        except Exception:
            self.handleError(record)

    def line(self, name: str, msg: str, fields: dict[str, Any]) -> None:
        """An info line from `info()`, formatted without a LogRecord."""
        entry = {"ts": self.formatter.timestamp(time.time()), "level": "info", "logger": name, "msg": msg, **fields}
        text = self.formatter.encode(entry)
        with self.lock:  # type: ignore[union-attr]
            self.add(text, logging.INFO)

    def add(self, text: str, level: int) -> None:
        """Queue one line; write the batch when it is due (the caller holds the lock)."""
        self._lines.append(text)
        self._size += len(text)
        if not _buffering or level >= logging.WARNING or self._size >= _BATCH_BYTES:
            self.flush()
        elif len(self._lines) == 1:
            self._oldest = time.monotonic()
        elif time.monotonic() - self._oldest >= _BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write every waiting line in one write."""
        with self.lock:  # type: ignore[union-attr]
            if self._lines:
                data = "\n".join(self._lines) + "\n"
                self._lines.clear()
                self._size = 0
                self.stream.write(data)
            super().flush()


def info(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """`logger.info(msg, extra=fields)`, straight into JsonLines when it is all the record would reach (the
    request and job lines: a LogRecord would cost about four times the line)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _only_handler(logger)
    if handler is None:
        logger.info(msg, extra=fields)
    else:
        handler.line(logger.name, msg, fields)


def _only_handler(logger: logging.Logger) -> JsonLines | None:
    root = logging.root
    handlers = root.handlers
    if len(handlers) != 1 or type(handlers[0]) is not JsonLines or root.filters or handlers[0].filters:
        return None
    node: Any = logger
    while node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    return handlers[0] if handlers[0].level <= logging.INFO else None


def buffer_lines() -> None:
    """Write info lines in batches from now on (a worker process, whose supervisor calls `flush()`)."""
    global _buffering
    _buffering = True


def flush() -> None:
    """Write the lines that wait in the root logger's JsonLines handlers."""
    for handler in logging.root.handlers:
        if isinstance(handler, JsonLines):
            handler.flush()


def configure(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines at `level` (idempotent)."""
    root = logging.getLogger()
    for handler in root.handlers:  # ours, or the one gunicorn's logconfig_dict installed: one line per record
        if isinstance(handler, JsonLines) or isinstance(handler.formatter, JsonFormatter):
            break
    else:
        root.addHandler(JsonLines())
    root.setLevel(level.upper())
    # Our lines do not carry the caller's file and line: skip walking the stack for them on every record.
    logging._srcfile = None  # type: ignore[attr-defined]

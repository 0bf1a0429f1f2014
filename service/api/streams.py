"""Result-stream encodings: NDJSON (one record per line) and Server-Sent Events (resumable by event id).

Both take batches from `Engine.follow` and turn each batch into one chunk, so a socket write carries every
record that is ready; an empty batch becomes a heartbeat (a blank NDJSON line, an SSE comment).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def ndjson(batches: Iterable[list[tuple[int, dict]]]) -> Iterator[bytes]:
    """One JSON record per line; a heartbeat is an empty line (readers skip blank lines)."""
    for batch in batches:
        if not batch:
            yield b"\n"
            continue
        yield "".join([_dumps(record) + "\n" for _, record in batch]).encode()


def sse(batches: Iterable[list[tuple[int, dict]]]) -> Iterator[bytes]:
    """`result` events whose `id` is the stream position; a final `end` event (no id) when complete."""
    for batch in batches:
        if not batch:
            yield b": keepalive\n\n"
            continue
        yield "".join([f"id: {pos}\nevent: result\ndata: {_dumps(record)}\n\n" for pos, record in batch]).encode()
    yield b"event: end\ndata: {}\n\n"

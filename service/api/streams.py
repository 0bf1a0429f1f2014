"""Result-stream encodings: NDJSON (one record per line) and Server-Sent Events (resumable by event id).

Both take batches from `Engine.follow` (a bounded number of records each) and write them in pieces of at
most `PIECE` bytes: ready records are joined while they fit in one piece, and a record larger than a piece
is cut into pieces. So a reader that stops reading holds one batch of records, one piece and the server's
framed copy of it (under 256 KiB), plus the one record being cut when a record is larger than a piece
(bounded by GREENPOOL_MAX_RESULT_BYTES), whatever the size of the pile. An empty batch becomes a heartbeat
(a blank NDJSON line, an SSE comment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..encoding import dumps

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
PIECE = 64 << 10  # bytes in one write of a stream, at most

Batches = Iterable[list[tuple[int, dict]]]


def ndjson(batches: Batches) -> Iterator[bytes]:
    """One JSON record per line; a heartbeat is an empty line (readers skip blank lines)."""
    return _pieces(batches, lambda _, record: dumps(record) + b"\n", b"\n")


def sse(batches: Batches) -> Iterator[bytes]:
    """`result` events whose `id` is the stream position; a final `end` event (no id) when complete."""
    yield from _pieces(batches, lambda pos, record: b"id: %d\nevent: result\ndata: %s\n\n" % (pos, dumps(record)),
                       b": keepalive\n\n")  # fmt: skip
    yield b"event: end\ndata: {}\n\n"


def _pieces(batches: Batches, encode: Callable[[int, dict], bytes], heartbeat: bytes) -> Iterator[bytes]:
    """Each batch's encoded records, joined into pieces of at most PIECE bytes (a longer record: cut)."""
    for batch in batches:
        if not batch:
            yield heartbeat
            continue
        parts: list[bytes] = []
        size = 0
        for pos, record in batch:
            data = encode(pos, record)
            if parts and size + len(data) > PIECE:
                piece, parts, size = b"".join(parts), [], 0
                yield piece
                del piece
            if len(data) > PIECE:
                for start in range(0, len(data), PIECE):
                    yield data[start : start + PIECE]
            else:
                parts.append(data)
                size += len(data)
            del data
        del batch
        if parts:
            piece, parts = b"".join(parts), []
            yield piece
            del piece

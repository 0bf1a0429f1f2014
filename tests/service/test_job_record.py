"""The job record's formats: RFC 3339 times exactly as `datetime` writes them, and ids as before (32 hex)."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime

from service.config import Config
from service.engine import Engine, rfc3339
from service.tasks import Registry


def datetime_rfc3339(ts: float) -> str:
    """How job times were formatted before rfc3339 cached the date and time of day per second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_rfc3339_writes_what_datetime_writes_for_any_timestamp() -> None:
    rng = random.Random(3339)
    now = time.time()
    stamps = [rng.uniform(0, 4e9) for _ in range(20_000)] + [now + rng.uniform(-5, 5) for _ in range(20_000)]
    # around millisecond and second boundaries, where rounding to the microsecond carries over
    stamps += [now // 1 + k / 1000 + d for k in range(1001) for d in (0, 5e-7, -5e-7, 4.995e-4, 9.995e-4, 9.9999e-4)]
    stamps += [0.0, 0.9999995, 1e9 + 0.0000005, 1e9 + 0.0000015, 253402300799.999]
    assert [rfc3339(ts) for ts in stamps] == [datetime_rfc3339(ts) for ts in stamps]
    assert rfc3339(None) is None


def test_job_and_pile_ids_are_distinct_32_digit_hex_strings() -> None:
    config = Config(pool_size=0, max_queued=2000, log_level="warning", store="memory")
    engine = Engine(config, Registry.with_builtins(entry_points=False))
    try:
        ids = [engine.submit("echo", {}).id for _ in range(1000)]  # several os.urandom reads' worth
        ids.append(engine.create_pile([("echo", {}, None)]).id)
        assert all(re.fullmatch(r"[0-9a-f]{32}", job_id) for job_id in ids)
        assert len(set(ids)) == len(ids)
    finally:
        engine.drain(0)
        for thread in engine.threads():
            thread.kill()

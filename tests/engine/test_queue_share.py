"""One client's share of the queue (`max_queued_per_client`), in-process: the default rule, the errors and
their mapping, and the count going down as jobs leave the queue (the real-server test is in tests/limits)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pool_core import Event
from service.api.errors import problem_for
from service.config import Config, ConfigError
from service.engine import Engine, errors


@pytest.fixture
def make(engine_factory: Callable[..., Engine]) -> Callable[..., Engine]:
    """Build engines with pool size 0: nothing leaves the queue by starting (stopped after the test)."""
    return lambda **config: engine_factory(pool_size=0, **config)


@pytest.mark.parametrize(("max_queued", "per_client", "share"), [(20, 0, 15), (20, 5, 5), (1, 0, 1), (10_000, 0, 7500)])
def test_the_share_is_three_quarters_of_the_queue_unless_set(
    make, max_queued: int, per_client: int, share: int
) -> None:
    engine = make(max_queued=max_queued, max_queued_per_client=per_client)
    assert engine._admission.per_client == share


def test_a_negative_share_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="GREENPOOL_MAX_QUEUED_PER_CLIENT"):
        Config.from_env({"GREENPOOL_MAX_QUEUED_PER_CLIENT": "-1"})


def test_a_client_over_its_share_is_queue_full_and_others_still_get_in(make) -> None:
    engine = make(max_queued=8)  # share 6
    jobs = [engine.submit("echo", {}, client="a") for _ in range(6)]
    with pytest.raises(errors.QueueFull) as full:
        engine.submit("echo", {}, client="a")
    problem = problem_for(full.value)
    assert problem.status == 429 and problem.headers["Retry-After"] and "this client" in problem.detail
    with pytest.raises(errors.QueueFull):
        engine.create_pile([("echo", {}, None)], client="a")
    engine.submit("echo", {}, client="b")
    engine.submit("echo", {})  # no client (an in-process caller): only the whole queue's bound applies
    engine.cancel(jobs[0].id)
    engine.submit("echo", {}, client="a")
    with pytest.raises(errors.QueueFull):  # the whole queue is full now (8), whoever asks
        engine.submit("echo", {}, client="c")


def test_a_request_larger_than_the_share_is_too_large_and_takes_nothing(make) -> None:
    engine = make(max_queued=8)
    pile = engine.create_pile([], open=True, client="a")
    for call in (lambda: engine.create_pile([("echo", {}, None)] * 7, client="a"),
                 lambda: engine.add_to_pile(pile.id, [("echo", {}, None)] * 7, client="a")):  # fmt: skip
        with pytest.raises(errors.TooLarge) as large:
            call()
        assert large.value.limit == 6 and problem_for(large.value).status == 413
    assert [engine.submit("echo", {}, client="a") for _ in range(6)]


def test_invalid_jobs_and_a_full_queue_give_the_share_back(make) -> None:
    engine = make(max_queued=4, max_queued_per_client=4)
    with pytest.raises(errors.InvalidArguments):
        engine.create_pile([("sleep", {"seconds": "x"}, None)] * 2, client="a")
    engine.submit("echo", {}, client="b")
    engine.submit("echo", {}, client="b")
    with pytest.raises(errors.QueueFull):
        engine.create_pile([("echo", {}, None)] * 3, client="a")
    assert [engine.submit("echo", {}, client="a") for _ in range(2)]


def test_a_started_job_stops_counting(make) -> None:
    engine = make(max_queued=4)  # share 3
    jobs = [engine.submit("sleep", {"seconds": 30}, client="a") for _ in range(3)]
    started = Event()
    engine.observers.append(lambda event, job: started.send(job) if event == "running" else None)
    engine.resize(1)
    assert started.wait(5) is jobs[0] and jobs[0].status == "running"
    engine.submit("echo", {}, client="a")
    with pytest.raises(errors.QueueFull):
        engine.submit("echo", {}, client="a")
    engine.drain(0)

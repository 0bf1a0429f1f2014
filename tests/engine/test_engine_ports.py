"""The engine through its seams: injected store, clock and ids; domain errors and their one mapping to problem
documents; and the app built in-process around injected services (falcon.testing, no server)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import falcon.testing
import pytest

from service.api import app as app_module
from service.api.app import Services, create_app
from service.api.errors import PROBLEM_BASE, problem_for
from service.config import Config
from service.engine import Engine, errors
from service.engine.errors import FieldError
from service.storage import MemoryStore
from service.tasks import Registry

T0 = 1_700_000_000.25


def fake_ids() -> Iterator[str]:
    return (f"id{n}" for n in itertools.count(1))


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """Engines a test builds; their green threads are stopped at the end."""
    made: list[Engine] = []
    yield made
    for engine in made:
        for thread in engine.threads():
            thread.kill()


def make_engine(engines: list[Engine], store: MemoryStore | None = None, **config: int) -> Engine:
    settings = {"pool_size": 0, "max_queued": 10, "log_level": "warning", "store": "memory", **config}
    engine = Engine(Config(**settings), Registry.with_builtins(entry_points=False), store, lambda: T0, fake_ids())
    engines.append(engine)
    return engine


# -- the engine with injected collaborators ------------------------------------------------------------------
def test_jobs_and_piles_take_their_ids_and_times_from_the_injected_sources(engines: list[Engine]) -> None:
    store = MemoryStore(100)
    engine = make_engine(engines, store)
    job = engine.submit("echo", {"a": 1})
    pile = engine.create_pile([("echo", {}, None)])
    assert (job.id, pile.id, pile.jobs[0].id) == ("id1", "id2", "id3")
    assert job.submitted_at == T0 and job.to_dict()["submitted_at"] == "2023-11-14T22:13:20.250Z"
    assert store.jobs.get("id1") is job and store.piles.get("id2") is pile


def test_a_pool_size_in_the_store_wins_over_the_configuration_and_resize_stores_it(engines: list[Engine]) -> None:
    store = MemoryStore(100)
    store.sizes.set("default", 7)
    engine = make_engine(engines, store, pool_size=3)
    assert engine.stats()["size"] == 7
    engine.resize(2)
    assert store.sizes.get("default") == 2 and engine.stats()["size"] == 2
    assert make_engine(engines, MemoryStore(100), pool_size=3).stats()["size"] == 3  # an empty store is seeded


def test_the_engine_raises_domain_errors_with_their_data(engines: list[Engine]) -> None:
    engine = make_engine(engines, max_queued=1)
    job = engine.submit("echo", {})
    with pytest.raises(errors.QueueFull) as full:
        engine.submit("echo", {})
    assert (full.value.queued, full.value.count, full.value.limit, full.value.retry_after) == (1, 1, 1, 60)
    with pytest.raises(errors.TooLarge) as large:
        engine.create_pile([("echo", {}, None)] * 2)
    assert large.value.limit == 1
    engine.cancel(job.id)
    with pytest.raises(errors.JobAlreadyEnded) as ended:
        engine.cancel(job.id)
    assert ended.value.status == "cancelled"
    with pytest.raises(errors.UnknownTask) as unknown:
        engine.submit("nope", {})
    assert unknown.value.task == "nope" and "echo" in unknown.value.known
    with pytest.raises(errors.InvalidArguments) as invalid:
        make_engine(engines).create_pile([("echo", {}, None), ("sleep", {"seconds": "x"}, None), ("nope", {}, None)])
    assert [(e.index, e.field) for e in invalid.value.errors] == [(1, "args.seconds"), (2, "task")]
    with pytest.raises(errors.JobNotFound):
        engine.get("missing")
    with pytest.raises(errors.PileNotFound):
        engine.get_pile("missing")


# -- the one mapping to problem documents --------------------------------------------------------------------
PROBLEMS = [
    (errors.QueueFull(5, 1, 5, 7), 429, "queue-full"),
    (errors.TooLarge("too many", 100), 413, "payload-too-large"),
    (errors.Draining(), 503, "draining"),
    (errors.JobNotFound("j1"), 404, "job-not-found"),
    (errors.PileNotFound("p1"), 404, "pile-not-found"),
    (errors.JobAlreadyEnded("j1", "succeeded"), 409, "job-already-ended"),
    (errors.PileClosed("p1"), 409, "pile-closed"),
    (errors.UnknownTask("nope", ["echo"]), 422, "unknown-task"),
    (errors.InvalidArguments([FieldError(None, "args", "m")], "echo"), 422, "validation-failed"),
    (errors.PoolNotFound("db"), 404, "pool-not-found"),
    (errors.PoolInUse("db", 1, 2), 409, "pool-in-use"),
    (errors.UnknownPool("db", ["default"]), 422, "unknown-pool"),
    (errors.StoreUnavailable("the store is full", 5), 503, "store-unavailable"),
]


@pytest.mark.parametrize("error, status, slug", PROBLEMS)
def test_each_domain_error_maps_to_its_problem(error: errors.EngineError, status: int, slug: str) -> None:
    problem = problem_for(error)
    body = problem.to_dict()
    assert (problem.status, body["type"], body["status"]) == (status, PROBLEM_BASE + slug, status)
    if not isinstance(error, errors.InvalidArguments):  # whose detail names the request's own field paths
        assert body["detail"] == str(error)


def test_every_domain_error_type_is_mapped() -> None:
    types = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.EngineError)}
    assert types - {errors.EngineError} == {type(error) for error, _, _ in PROBLEMS}


def test_problem_headers_and_members_carry_the_errors_data() -> None:
    full = problem_for(errors.QueueFull(5, 2, 5, 7))
    assert full.headers == {"Retry-After": "7"} and full.to_dict()["retry_after"] == 7
    assert problem_for(errors.TooLarge("too many", 100)).to_dict()["limit"] == 100
    assert problem_for(errors.Draining()).headers == {"Retry-After": "5"}
    assert problem_for(errors.JobAlreadyEnded("j1", "failed")).to_dict()["job_status"] == "failed"


def test_field_paths_are_built_from_the_requests_own_names() -> None:
    single = problem_for(errors.InvalidArguments([FieldError(None, "args.x", "bad")], "echo")).to_dict()
    assert single["errors"] == [{"field": "args.x", "message": "bad"}]
    assert single["detail"] == "invalid arguments for task 'echo': args.x"
    batch = errors.InvalidArguments([FieldError(3, "args.x", "bad"), FieldError(0, "task", "unknown task 'n'")])
    assert [e["field"] for e in problem_for(batch, ["jobs[0]", "", "", "jobs[3]"]).to_dict()["errors"]] == [
        "jobs[3].args.x", "jobs[0].task",
    ]  # fmt: skip
    many = errors.InvalidArguments([FieldError(i, "args", "bad") for i in range(60)])
    document = problem_for(many, [f"items[{i}]" for i in range(60)]).to_dict()
    assert len(document["errors"]) == 50 and document["detail"].startswith("60 invalid job(s): items[0].args, ")


# -- the app in-process, around injected services ------------------------------------------------------------
@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[falcon.testing.TestClient]:
    """The app on a memory store with a fixed clock and counted ids; no drain hook, no log handler left behind."""
    monkeypatch.setattr(app_module.lifecycle, "on_drain", lambda callback: callback)
    monkeypatch.setattr(app_module.logs, "configure", lambda level: None)
    config = Config(pool_size=0, max_queued=1, log_level="warning")
    app = create_app(config, Services(store=MemoryStore(100), clock=lambda: T0, ids=fake_ids()))
    yield falcon.testing.TestClient(app)
    for thread in app.engine.threads():
        thread.kill()


def test_resources_run_in_process_on_injected_services(client: falcon.testing.TestClient) -> None:
    created = client.simulate_post("/v1/jobs", json={"task": "echo", "args": {"a": 1}})
    assert created.status_code == 202 and created.headers["location"] == "/v1/jobs/id1"
    assert created.json["submitted_at"] == "2023-11-14T22:13:20.250Z" and created.json["status"] == "queued"
    assert client.simulate_get("/v1/jobs/id1").json["id"] == "id1"
    full = client.simulate_post("/v1/jobs", json={"task": "echo", "args": {}})
    assert full.status_code == 429 and full.headers["retry-after"] == "60"  # nothing has finished yet: the longest wait
    assert full.headers["content-type"] == "application/problem+json" and full.json["type"].endswith("/queue-full")
    missing = client.simulate_get("/v1/jobs/nope")
    assert missing.status_code == 404 and missing.json["detail"].startswith("no job with id 'nope'")

"""The task registry: the decorator, plugin modules and entry points, argument validation, schemas, and
running tasks (cooperative ones in green threads, blocking ones on OS threads)."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import jsonschema
import pytest
from typing_extensions import TypedDict

import pool_core
import service.tasks
from pool_core.hub import get_hub
from service.tasks import (
    DuplicateTask,
    InvalidArguments,
    PluginError,
    Registry,
    Task,
    TaskDefinitionError,
    TaskSpec,
    UnknownTask,
    default_registry,
    reject,
    task,
)
from service.tasks.decorator import spec_of

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _quiet_hub_after_test():
    yield
    for timer in get_hub().timers():
        timer.cancel()
    pool_core.sleep(0)


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Write a plugin module with a unique name into tmp_path (on sys.path); returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(source: str, name: str | None = None) -> str:
        name = name or f"tasks_plugin_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


PLUGIN = """
    import threading
    import time

    from service.tasks import task

    @task()
    def resize_image(path: str, width: int = 100) -> dict:
        '''Pretend to resize an image.

        More text that is not the description.
        '''
        return {"path": path, "width": width}

    @task(name="plugin.whoami", blocking=True, description="the OS thread it ran on")
    def whoami(pause: float = 0.0) -> dict:
        time.sleep(pause)
        return {"thread": threading.get_ident()}

    def not_a_task() -> None:
        pass
"""


def _registry(**kwargs: Any) -> Registry:
    kwargs.setdefault("entry_points", False)
    return Registry.with_builtins(**kwargs)


# -- the decorator ------------------------------------------------------------------------------------
def test_package_exports_the_decorator():
    assert service.tasks.task is task
    assert callable(task())


def test_decorator_marks_and_does_not_register():
    @task()
    def resize(path: str) -> dict:
        """Resize it.

        Details.
        """
        return {}

    assert spec_of(resize) == TaskSpec(name="resize", cooperative=False, description="Resize it.", check=None)
    assert "resize" not in default_registry
    assert resize(path="x") == {}  # still the plain function


def test_decorator_forms():
    @task
    def bare() -> None:
        pass

    @task(name="x.y-z", blocking=True, description="given")
    def named() -> None:
        """Docstring."""

    assert spec_of(bare).name == "bare"
    assert spec_of(named) == TaskSpec(name="x.y-z", cooperative=False, description="given", check=None)


def test_tasks_block_unless_they_say_cooperative():
    @task()
    def plain() -> None:
        pass

    @task(cooperative=True)
    def polite() -> None:
        pass

    def unmarked() -> None:
        pass

    registry = Registry()
    assert registry.register(plain).blocking and not registry.register(polite).blocking
    assert not registry.register(unmarked).cooperative  # unmarked functions block too
    assert all(t.cooperative for t in _registry())  # sleep, echo and http run on the hub
    for contradiction in ({"blocking": False}, {"blocking": True, "cooperative": True}):
        with pytest.raises(TaskDefinitionError, match="contradicts"):
            task(name="contrary", **contradiction)(lambda: None)


def test_bad_task_definitions_fail_early():
    with pytest.raises(TaskDefinitionError, match="invalid task name"):
        task(name="has space")(lambda: None)

    def positional(a: int, /) -> None:
        pass

    with pytest.raises(TaskDefinitionError, match="positional-only parameter 'a'"):
        Registry().register(positional)

    def unresolvable(a: NoSuchType) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(TaskDefinitionError, match="cannot read the signature"):
        Registry().register(unresolvable)


# -- the registry, plugins and entry points ---------------------------------------------------------------
def test_builtins_and_describe():
    registry = _registry()
    assert registry.names() == ["echo", "http", "sleep"]
    described = registry.describe()
    assert [d["name"] for d in described] == ["echo", "http", "sleep"]
    for entry in described:
        assert set(entry) == {"name", "description", "blocking", "pool", "retries", "retry_backoff", "args_schema"}
        assert entry["description"] and entry["blocking"] is False and entry["pool"] is None
        assert (entry["retries"], entry["retry_backoff"]) == (0, 1.0)
    assert default_registry.names() == ["echo", "http", "sleep"]


def test_describe_shows_a_tasks_retry_defaults():
    """GET /v1/tasks tells a client what a job of the task gets when it gives no `retries`/`retry_backoff`."""

    @task(name="flaky_fetch", retries=3, retry_backoff=0.5, pool="io")
    def flaky_fetch() -> None:
        """Fails now and then."""

    entry = Task.from_function(flaky_fetch).describe()
    assert (entry["retries"], entry["retry_backoff"], entry["pool"]) == (3, 0.5, "io")


def test_unknown_task():
    with pytest.raises(UnknownTask, match="unknown task 'nope'") as info:
        _registry().get("nope")
    assert info.value.name == "nope"
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownTask):
        _registry().get(["not", "hashable"])


def test_plugin_module_lands_in_the_new_registry_only(plugin):
    name = plugin(PLUGIN)
    registry = _registry(plugins=[name])
    assert registry.names() == ["echo", "http", "plugin.whoami", "resize_image", "sleep"]
    resize = registry.get("resize_image")
    assert resize.description == "Pretend to resize an image."
    assert resize.source == f"{name}.resize_image"
    assert registry.get("plugin.whoami").blocking is True
    assert "resize_image" not in default_registry
    assert "resize_image" in _registry(plugins=[name])  # a second registry gets it too
    assert "resize_image" not in _registry()


def test_load_module_returns_names_and_a_reexport_is_registered_once(plugin):
    first = plugin(PLUGIN)
    second = plugin(f"from {first} import resize_image\n")
    registry = Registry()
    assert sorted(registry.load_module(first)) == ["plugin.whoami", "resize_image"]
    assert registry.load_module(second) == ["resize_image"]
    assert registry.names() == ["plugin.whoami", "resize_image"]


def test_duplicate_task_names_fail_at_startup(plugin):
    clash = plugin("""
        from service.tasks import task

        @task(name="sleep")
        def my_sleep(seconds: float) -> dict:
            return {}
    """)
    with pytest.raises(DuplicateTask, match=rf"'sleep' is registered twice: by service\.tasks\.builtins\.sleep "
                                            rf"and by {clash}\.my_sleep"):  # fmt: skip
        _registry(plugins=[clash])


def test_plugin_module_errors_name_the_module(plugin):
    with pytest.raises(PluginError, match="cannot import task plugin module 'no_such_module_xyz'"):
        _registry(plugins=["no_such_module_xyz"])
    empty = plugin("X = 1\n")
    with pytest.raises(PluginError, match=f"{empty}.*defines no @task function"):
        _registry(plugins=[empty])
    broken = plugin("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match=f"{broken}.*boom"):
        _registry(plugins=[broken])


def _fake_entry_points(monkeypatch, *entries: tuple[str, str]) -> None:
    eps = [importlib.metadata.EntryPoint(name, value, "greenpool.tasks") for name, value in entries]

    def entry_points(**params: Any) -> list:
        assert params == {"group": "greenpool.tasks"}
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_entry_points_name_modules_or_functions(plugin, monkeypatch):
    module = plugin(PLUGIN)
    single = plugin("""
        from service.tasks import task

        @task()
        def ping() -> dict:
            return {"pong": True}

        @task()
        def ignored() -> None:
            pass
    """)
    _fake_entry_points(monkeypatch, ("images", module), ("ping", f"{single}:ping"))
    registry = Registry.with_builtins()
    assert registry.names() == ["echo", "http", "ping", "plugin.whoami", "resize_image", "sleep"]
    assert registry.get("ping").run({}) == {"pong": True}
    assert "ping" not in Registry.with_builtins(entry_points=False)


def test_bad_entry_points_fail_clearly(plugin, monkeypatch):
    module = plugin("def plain() -> None:\n    pass\n")
    _fake_entry_points(monkeypatch, ("plain", f"{module}:plain"))
    with pytest.raises(PluginError, match="entry point 'plain'.*neither a module nor a @task function"):
        Registry.with_builtins()
    _fake_entry_points(monkeypatch, ("gone", "no_such_module_xyz"))
    with pytest.raises(PluginError, match="cannot load entry point 'gone'"):
        Registry.with_builtins()


def test_http_allow_and_http_policy_are_exclusive():
    from service.tasks import HttpPolicy

    with pytest.raises(ValueError, match="either http_allow or http_policy"):
        Registry.with_builtins(http_allow=["127.0.0.0/8"], http_policy=HttpPolicy(), entry_points=False)


# -- validation ------------------------------------------------------------------------------------------
class Point(TypedDict):
    x: int
    y: int


@task()
def typed(
    n: int,
    x: float = 1.0,
    s: str = "",
    flag: bool = False,
    tags: list[str] | None = None,
    when: datetime | None = None,
    point: Point | None = None,
    points: list[Point] | None = None,
    mode: Literal["a", "b"] = "a",
    anything: Any = None,
) -> dict:
    """Every kind of annotation."""
    return {"when": when, "point": point}


@pytest.fixture
def typed_task() -> Task:
    return Registry().register(typed)


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [({}, "n", "required argument is missing"),
     ({"n": 1, "extra": 2}, "extra", "unknown argument"),
     ({"n": "5"}, "n", "valid integer (got string)"),
     ({"n": 5.5}, "n", "valid integer (got number)"),
     ({"n": 5.5}, "n", "valid integer"),
     ({"n": True}, "n", "valid integer (got boolean)"),
     ({"n": None}, "n", "valid integer (got null)"),
     ({"n": 1, "x": "1.5"}, "x", "valid number (got string)"),
     ({"n": 1, "s": 5}, "s", "valid string (got integer)"),
     ({"n": 1, "flag": 1}, "flag", "valid boolean (got integer)"),
     ({"n": 1, "flag": "true"}, "flag", "valid boolean"),
     ({"n": 1, "tags": "a"}, "tags", "valid array (got string)"),
     ({"n": 1, "tags": ["a", 2]}, "tags.1", "valid string (got integer)"),
     ({"n": 1, "when": "yesterday"}, "when", "datetime"),
     ({"n": 1, "point": {"x": 1}}, "point.y", "required field is missing"),
     ({"n": 1, "point": {"x": 1, "y": 2, "z": 3}}, "point.z", "unknown field"),
     ({"n": 1, "points": [{"x": 1, "y": 2}, {"x": "1", "y": 2}]}, "points.1.x", "valid integer"),
     ({"n": 1, "mode": "c"}, "mode", "'a' or 'b'")],
)  # fmt: skip
def test_one_bad_field_is_named(typed_task, args, field, message):
    with pytest.raises(InvalidArguments) as info:
        typed_task.validate(args)
    assert [e["field"] for e in info.value.errors] == [field]
    assert message in info.value.errors[0]["message"]


def test_every_bad_field_is_reported(typed_task):
    with pytest.raises(InvalidArguments) as info:
        typed_task.validate({"x": "no", "bogus": 1})
    assert sorted(e["field"] for e in info.value.errors) == ["bogus", "n", "x"]
    assert "n: required argument is missing" in str(info.value)


@pytest.mark.parametrize(("args", "json_name"), [([], "array"), ("x", "string"), (None, "null"), (5, "integer")])
def test_args_must_be_an_object(typed_task, args, json_name):
    with pytest.raises(InvalidArguments) as info:
        typed_task.validate(args)
    assert info.value.errors == [{"field": "", "message": f"args must be a JSON object, not {json_name}"}]


@pytest.mark.parametrize("args", [{1: 2}, {"n": float("nan")}, {"n": object()}])
def test_args_must_be_plain_json(typed_task, args):
    with pytest.raises(InvalidArguments) as info:
        typed_task.validate(args)
    assert info.value.errors[0]["field"] == ""


def test_valid_args_are_normalised_json_and_run_gets_python_values(typed_task):
    args = typed_task.validate({"n": 3, "x": 2, "when": "2024-01-02T03:04:05Z", "point": {"x": 1, "y": 2},
                                "anything": {"deep": [1, None]}})  # fmt: skip
    assert args == {"n": 3, "x": 2.0, "when": "2024-01-02T03:04:05Z", "point": {"x": 1, "y": 2},
                    "anything": {"deep": [1, None]}}  # fmt: skip
    assert isinstance(args["x"], float)
    result = typed_task.run(args)
    assert result["when"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert typed_task.validate({"n": 1}) == {"n": 1}  # defaults are left to the function


def test_echo_accepts_any_object_and_kwargs_mix():
    echo = _registry().get("echo")
    args = {"a": [1, {"b": None}], "c": "d", "n": 1.5}
    assert echo.run(echo.validate(args)) == args
    assert echo.validate({}) == {}

    @task()
    def mixed(level: int, **rest: Any) -> dict:
        return {"level": level, "rest": rest}

    mixed_task = Registry().register(mixed)
    assert mixed_task.run(mixed_task.validate({"level": 2, "other": [1]})) == {"level": 2, "rest": {"other": [1]}}
    with pytest.raises(InvalidArguments, match="level"):
        mixed_task.validate({"level": "2"})


def test_cross_field_check():
    def check(args: dict) -> None:
        if args.get("low", 0) > args.get("high", 10):
            reject("low", "must not exceed high")

    @task(check=check)
    def span(low: int = 0, high: int = 10) -> dict:
        return {}

    span_task = Registry().register(span)
    span_task.validate({"low": 3})
    with pytest.raises(InvalidArguments) as info:
        span_task.validate({"low": 11})
    assert info.value.errors == [{"field": "low", "message": "must not exceed high"}]


def test_sleep_validation():
    sleep = _registry().get("sleep")
    assert sleep.validate({"seconds": 1}) == {"seconds": 1.0}
    for bad in (-1, 3601, "1"):
        with pytest.raises(InvalidArguments, match="seconds"):
            sleep.validate({"seconds": bad})


# -- schemas ---------------------------------------------------------------------------------------------
def test_schemas_are_draft_2020_12_and_agree_with_validate(typed_task):
    registry = _registry()
    for entry in registry.describe() + [typed_task.describe()]:
        schema = entry["args_schema"]
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(schema)
    sleep = registry.get("sleep").schema
    assert sleep["properties"]["seconds"]["type"] == "number"
    assert (sleep["properties"]["seconds"]["minimum"], sleep["properties"]["seconds"]["maximum"]) == (0, 3600)
    assert sleep["required"] == ["seconds"]
    assert sleep["additionalProperties"] is False
    assert registry.get("echo").schema["additionalProperties"] is True
    http = registry.get("http").schema
    assert http["required"] == ["url"]
    assert set(http["properties"]) == {"url", "method", "headers", "body", "json", "timeout", "max_redirects"}
    validator = jsonschema.Draft202012Validator(typed_task.schema)
    for args, ok in [({"n": 1}, True), ({"n": "1"}, False), ({}, False), ({"n": 1, "zz": 0}, False),
                     ({"n": 1, "point": {"x": 1, "y": 2}}, True), ({"n": 1, "mode": "c"}, False)]:  # fmt: skip
        assert validator.is_valid(args) is ok, args


# -- running ----------------------------------------------------------------------------------------------
def test_sleep_is_cooperative():
    sleep = _registry().get("sleep")
    started = time.monotonic()
    threads = [pool_core.spawn(sleep.run, sleep.validate({"seconds": 0.1})) for _ in range(20)]
    assert [gt.wait() for gt in threads] == [{"slept": 0.1}] * 20
    assert time.monotonic() - started < 0.5


def test_blocking_task_runs_on_an_os_thread_holding_its_pool_slot(plugin):
    registry = _registry(plugins=[plugin(PLUGIN)])
    whoami = registry.get("plugin.whoami")
    pool = pool_core.GreenPool(2)
    ticks: list[float] = []
    running: list[int] = []

    def ticker() -> None:
        for _ in range(10):
            ticks.append(time.monotonic())
            running.append(pool.running())
            pool_core.sleep(0.02)

    started = time.monotonic()
    ticking = pool_core.spawn(ticker)
    job = pool.spawn(whoami.run, whoami.validate({"pause": 0.3}))
    result = job.wait()
    ticking.wait()
    assert result["thread"] != threading.get_ident()
    assert len(ticks) == 10 and ticks[-1] - started < 0.3  # the hub kept running while it slept
    assert running[0] == 1  # the blocking call held its slot
    assert pool.running() == 0


def test_blocking_task_errors_propagate():
    def explode() -> None:
        raise KeyError("inside the thread")

    boom = Registry().register(explode, blocking=True)
    with pytest.raises(KeyError, match="inside the thread"):
        pool_core.spawn(boom.run, {}).wait()


def test_registry_close_is_harmless():
    registry = _registry()
    registry.close()
    registry.close()
    assert registry.get("sleep").run({"seconds": 0}) == {"slept": 0}

"""The README's example plugin (examples/tasks/wordcount.py), loaded the way the README says: a real server
with GREENPOOL_PLUGINS=wordcount and examples/tasks on PYTHONPATH; its tasks run, bad arguments get 422, and
the served /openapi.yaml states them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from serverkit import REPO, Server, Servers

EXAMPLES = REPO / "examples" / "tasks"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with only the example plugin module (besides the built-ins)."""
    servers = Servers(tmp_path_factory.mktemp("example-plugin"), pythonpath=[EXAMPLES])
    try:
        yield servers.start({"GREENPOOL_PLUGINS": "wordcount"})
    finally:
        servers.close()


def run(server: Server, task: str, args: dict) -> dict:
    """Submit a job and wait (bounded) for it to end; the job."""
    resp = server.post("/v1/jobs", params={"wait": 10}, json={"task": task, "args": args})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_the_example_tasks_are_listed_with_how_they_run(server: Server) -> None:
    tasks = {t["name"]: t for t in server.get("/v1/tasks").json()["tasks"]}
    assert tasks["wordcount"]["blocking"] is True  # the default: an OS thread
    assert tasks["countdown"]["blocking"] is False  # cooperative=True: on the hub
    schema = tasks["wordcount"]["args_schema"]
    assert schema["required"] == ["text"] and schema["properties"]["top"]["maximum"] == 100, schema


def test_the_example_tasks_run(server: Server) -> None:
    job = run(server, "wordcount", {"text": "the cat and the hat and a bat", "top": 2, "min_length": 3})
    assert job["status"] == "succeeded", job
    assert job["result"] == {"words": 7, "top": [["the", 2], ["and", 2]]}, job
    assert run(server, "wordcount", {"text": "a b a", "top": 1})["result"] == {"words": 3, "top": [["a", 2]]}  # README
    job = run(server, "countdown", {"start": 3})
    assert job["status"] == "succeeded" and job["result"] == [3, 2, 1], job


@pytest.mark.parametrize(("args", "field"), [
    ({}, "args.text"),  # required: no default
    ({"text": 5}, "args.text"),  # a number is not a string
    ({"text": "x", "top": 0}, "args.top"),  # Field(ge=1)
    ({"text": "x", "top": "3"}, "args.top"),  # no coercion from a string
    ({"text": "x", "min_length": 21}, "args.min_length"),  # the task's `check`
    ({"text": "x", "colour": "red"}, "args.colour"),  # unknown argument
])  # fmt: skip
def test_bad_arguments_are_refused_with_422_naming_the_field(server: Server, args: dict, field: str) -> None:
    resp = server.post("/v1/jobs", json={"task": "wordcount", "args": args})
    assert resp.status_code == 422, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers
    assert [e["field"] for e in resp.json()["errors"]] == [field], resp.json()


def test_the_served_document_states_the_plugin_tasks(server: Server) -> None:
    """/openapi.yaml keys bodies by this server's tasks, plugins included, with the schemas /v1/tasks lists;
    the rest of the document is openapi.yaml's."""
    served = yaml.safe_load(server.get("/openapi.yaml").text)
    tasks = {t["name"]: t["args_schema"] for t in server.get("/v1/tasks").json()["tasks"]}
    schemas = served["components"]["schemas"]
    assert schemas["TaskArgs"]["$defs"] == {name: {k: v for k, v in schema.items() if k != "$schema"}
                                            for name, schema in tasks.items()}  # fmt: skip
    assert [b["properties"]["task"]["const"] for b in schemas["TaskJob"]["oneOf"]] == sorted(tasks)
    assert [b["properties"]["task"]["const"] for b in schemas["TaskItems"]["oneOf"]] == sorted(tasks)
    wordcount = next(b for b in schemas["TaskJob"]["oneOf"] if b["title"] == "wordcount")
    assert wordcount["required"] == ["args"]  # `text` is required
    job = {"task": "wordcount", "args": {"text": "a b"}}
    validator = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/JobSubmission", **served})
    assert validator.is_valid(job) and not validator.is_valid({"task": "wordcount"})
    document = yaml.safe_load((REPO / "openapi.yaml").read_text())
    for name in ("TaskArgs", "TaskJob", "TaskItems"):
        del schemas[name], document["components"]["schemas"][name]
    assert served == document


def test_without_plugins_the_document_is_served_as_it_is(tmp_path: Path) -> None:
    servers = Servers(tmp_path)
    try:
        assert servers.start().get("/openapi.yaml").content == (REPO / "openapi.yaml").read_bytes()
    finally:
        servers.close()

"""openapi.yaml states each built-in task's argument schema exactly as the registry does (`GET /v1/tasks`),
and keys the job, pile and map bodies by task with it, so that a body the document allows is one the server
takes (and the other way round) — what schemathesis' positive and negative checks hold the server to."""

from __future__ import annotations

from typing import Any

import pytest

from service.tasks import Registry


@pytest.fixture(scope="module")
def builtins() -> dict[str, dict[str, Any]]:
    """The built-in tasks' argument schemas, without the `$schema` member (it only belongs at a root)."""
    registry = Registry.with_builtins(entry_points=False)
    return {t["name"]: {k: v for k, v in t["args_schema"].items() if k != "$schema"} for t in registry.describe()}


@pytest.mark.timeout(10)
def test_task_args_are_the_registry_schemas(spec: dict[str, Any], builtins: dict[str, dict[str, Any]]) -> None:
    assert spec["components"]["schemas"]["TaskArgs"]["$defs"] == builtins


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("name", "field"), [("TaskJob", "args"), ("TaskItems", "items")])
def test_bodies_are_keyed_by_task(spec: dict[str, Any], builtins: dict[str, dict[str, Any]], name: str,
                                  field: str) -> None:  # fmt: skip
    branches = spec["components"]["schemas"][name]["oneOf"]
    assert [b["properties"]["task"] for b in branches] == [{"const": task} for task in builtins]
    for branch, (task, schema) in zip(branches, builtins.items(), strict=True):
        ref = {"$ref": f"#/components/schemas/TaskArgs/$defs/{task}"}
        assert branch["properties"][field] == (ref if field == "args" else {"type": "array", "items": ref})
        if field == "args":  # args may be left out ({}) only when the task requires none
            assert ("args" in branch.get("required", [])) == bool(schema.get("required")), task

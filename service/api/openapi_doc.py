"""The OpenAPI document as served: openapi.yaml with its task schemas rebuilt from the registry.

openapi.yaml states the built-in tasks' argument schemas (`TaskArgs.$defs`) and keys the job, pile and map
bodies by task (`TaskJob.oneOf`, `TaskItems.oneOf`); a server with plugin tasks serves the same document
with those three values rebuilt from its registry, so that clients and fuzzers see the real contract. The
values are spliced into the YAML text as JSON (a YAML flow value): no YAML library is needed at runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["served_document", "task_schemas"]


def task_schemas(tasks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """`{TaskArgs.$defs, TaskJob.oneOf, TaskItems.oneOf}` for tasks described as `GET /v1/tasks` lists them."""
    defs = {t["name"]: {k: v for k, v in t["args_schema"].items() if k != "$schema"} for t in tasks}
    jobs, items = [], []
    for name, schema in defs.items():
        ref = {"$ref": f"#/components/schemas/TaskArgs/$defs/{_pointer_token(name)}"}
        job: dict[str, Any] = {"title": name}
        if schema.get("required"):  # args may be left out ({}) only when none is required
            job["required"] = ["args"]
        job["properties"] = {"task": {"const": name}, "args": ref}
        jobs.append(job)
        items.append({"title": name, "properties": {"task": {"const": name}, "items": {"type": "array", "items": ref}}})
    return {"TaskArgs.$defs": defs, "TaskJob.oneOf": jobs, "TaskItems.oneOf": items}


def served_document(text: str, tasks: Iterable[dict[str, Any]]) -> str:
    """`text` (openapi.yaml) with `components.schemas.{TaskArgs.$defs, TaskJob.oneOf, TaskItems.oneOf}`
    replaced by the values for `tasks`."""
    for place, value in task_schemas(tasks).items():
        schema, member = place.split(".")
        text = _replace_member(text, schema, member, json.dumps(value, ensure_ascii=False))
    return text


def _replace_member(text: str, schema: str, member: str, value: str) -> str:
    """Replace the block value of `member` (6 spaces in) of schema `schema` (4 spaces in) with `value`."""
    lines = text.split("\n")
    at = lines.index(f"    {schema}:")  # ValueError if the document has no such schema
    at = next(i for i in range(at + 1, len(lines)) if lines[i].startswith(f"      {member}:"))
    end = at + 1
    while end < len(lines) and (lines[end].startswith(" " * 7) or lines[end] == ""):
        end += 1
    while lines[end - 1] == "":  # blank lines before the next member stay
        end -= 1
    return "\n".join([*lines[:at], f"      {member}: {value}", *lines[end:]])


def _pointer_token(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")

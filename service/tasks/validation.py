"""Argument checking from a task function's signature: a pydantic model, its JSON Schema, field errors.

Rules (the contract of `Task.validate`):
  * `args` must be a JSON object (a dict with string keys holding only JSON values; no NaN/Infinity).
  * Each keyword parameter is one argument; its annotation is its type (no annotation = any JSON value);
    a parameter without a default is required. Unknown arguments are refused unless the function takes
    `**kwargs` (then any extra JSON value is accepted and passed on: `echo(**args)` accepts any object).
  * Types are checked strictly, as JSON: a string is never coerced to a number or a number to a string,
    `true` is not an int, `5.5` is not an int — but an int is a valid `float`, and an integral number written
    with a fraction (`5.0`) is a valid `int` (JSON Schema's `integer` is a value, not a spelling). Types
    that have a JSON string form (datetime, UUID, Path, Enum values...) accept that string.
  * Positional-only parameters cannot be given by name, so a function with one is not a valid task.
  * A `check` (rules across arguments) may carry a `json_schema` attribute: members added to the schema,
    so that it states the rule too (`not: {required: [a, b]}` for two arguments that exclude each other).
The normalised arguments `validate` returns hold only the arguments given (defaults are left to the
function) as plain JSON values — the engine stores them in the job record; `to_kwargs` turns them into the
Python values the annotations describe (datetime, pydantic models, typed dicts) just before the call.
A pydantic model used as an annotation keeps its own configuration (strictness, extra fields).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pydantic

from .errors import InvalidArguments, TaskDefinitionError

__all__ = ["ArgsValidator", "JSON_SCHEMA_DIALECT", "json_type"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: `json.dumps(obj, allow_nan=False)`, without building a new encoder for each call.
_strict_dumps = json.JSONEncoder(allow_nan=False).encode
#: passes of `_integral_retry` (a union can hide an int behind another branch's error until the first is fixed)
_MAX_INTEGRAL_PASSES = 3


class ArgsValidator:
    """Validates a JSON object of arguments against one function's signature."""

    def __init__(self, fn: Callable[..., Any], title: str, check: Callable[[dict], None] | None = None) -> None:
        try:
            signature = inspect.signature(fn, eval_str=True)
        except (NameError, TypeError, ValueError) as exc:
            raise TaskDefinitionError(f"task {title!r}: cannot read the signature of {fn!r}: {exc}") from exc
        fields: dict[str, Any] = {}
        self._names: dict[str, str] = {}  # model field name -> argument (parameter) name
        any_extra = False
        for index, param in enumerate(signature.parameters.values()):
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                any_extra = True
            elif param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise TaskDefinitionError(
                    f"task {title!r}: positional-only parameter {param.name!r} cannot be given by name"
                )
            elif param.kind is not inspect.Parameter.VAR_POSITIONAL:
                annotation = Any if param.annotation is param.empty else param.annotation
                default = ... if param.default is param.empty else param.default
                # Internal field names, the real name as alias: parameters may be called `json`, `schema`...
                field_name = f"arg{index}"
                fields[field_name] = (annotation, pydantic.Field(default, alias=param.name))
                self._names[field_name] = param.name
        config = pydantic.ConfigDict(
            strict=True,
            extra="allow" if any_extra else "forbid",
            title=title,
            arbitrary_types_allowed=False,
        )
        try:
            self._model = pydantic.create_model("TaskArgs", __config__=config, **fields)
            schema = self._model.model_json_schema(by_alias=True)
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, TypeError) as exc:
            raise TaskDefinitionError(f"task {title!r}: unsupported argument annotation: {exc}") from exc
        self.schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **schema, **getattr(check, "json_schema", {})}
        self._check = check
        # only **kwargs (like `echo`): any JSON object is valid as it is, so the model would be the identity
        self._any_object = any_extra and not self._names and check is None

    def validate(self, args: Any) -> dict[str, Any]:
        """The normalised keyword arguments, or InvalidArguments naming each bad field."""
        if not isinstance(args, dict):
            raise InvalidArguments([{"field": "", "message": f"args must be a JSON object, not {json_type(args)}"}])
        bad_keys = [key for key in args if not isinstance(key, str)]
        if bad_keys:
            raise InvalidArguments([{"field": "", "message": f"argument names must be strings: {bad_keys!r}"}])
        try:
            payload = _strict_dumps(args)
        except (TypeError, ValueError) as exc:
            raise InvalidArguments([{"field": "", "message": f"args must hold only JSON values: {exc}"}]) from None
        if self._any_object:
            return args
        try:
            model = self._model.model_validate_json(payload)
        except pydantic.ValidationError as exc:
            model = self._integral_retry(args, exc)
        normalised = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if self._check is not None:
            self._check(normalised)
        return normalised

    def _integral_retry(self, args: dict[str, Any], exc: pydantic.ValidationError) -> pydantic.BaseModel:
        """Validate again with each integral float that failed as an `int` (`5.0`) written as an int."""
        fixed = json.loads(_strict_dumps(args))  # a copy: the caller's args are left as sent
        for _ in range(_MAX_INTEGRAL_PASSES):
            errors = exc.errors(include_url=False, include_context=False)
            if not [error for error in errors if _integral_to_int(fixed, error)]:  # every one rewritten, not any()
                break
            try:
                return self._model.model_validate_json(_strict_dumps(fixed))
            except pydantic.ValidationError as again:
                exc = again
        raise InvalidArguments(_field_errors(exc)) from None

    def to_kwargs(self, args: dict[str, Any]) -> dict[str, Any]:
        """The Python values for validated `args`: datetimes, models, typed dicts... as annotated."""
        if self._any_object:
            return dict(args)
        try:
            model = self._model.model_validate(args, strict=False)
        except pydantic.ValidationError as exc:
            raise InvalidArguments(_field_errors(exc)) from None
        kwargs = {self._names[name]: getattr(model, name) for name in self._names if name in model.model_fields_set}
        if model.model_extra:
            kwargs.update(model.model_extra)
        return kwargs


def _integral_to_int(args: dict[str, Any], error: Any) -> bool:
    """Rewrite the integral float an `int_type` error points at as an int; whether it did."""
    value = error.get("input")
    if error["type"] != "int_type" or not isinstance(value, float) or not value.is_integer():
        return False
    parent: Any = None
    key: Any = None
    node: Any = args
    for part in error["loc"]:  # a part that names no member is a union branch (`int`, `list[int]`): skip it
        if isinstance(node, dict) and part in node or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):  # fmt: skip
            parent, key, node = node, part, node[part]
    if parent is None or not isinstance(node, float) or node != value:
        return False
    parent[key] = int(value)
    return True


def _field_errors(exc: pydantic.ValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = error["loc"]
        kind = error["type"]
        if kind == "missing":
            message = "required argument is missing" if len(loc) == 1 else "required field is missing"
        elif kind == "extra_forbidden":
            message = "unknown argument" if len(loc) == 1 else "unknown field"
        elif kind.endswith("_type"):
            message = f"{error['msg']} (got {json_type(error.get('input'))})"
        elif kind == "value_error":
            message = error["msg"].removeprefix("Value error, ")
        else:
            message = error["msg"]
        errors.append({"field": ".".join(str(part) for part in loc), "message": message})
    return errors


def json_type(value: Any) -> str:
    """The JSON (Schema) name of a value's type: object, array, string, integer, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__

"""The one serializer: values to journal JSON and back, faithfully.

Encoding goes through pydantic's ``to_jsonable_python`` (models, dataclasses, datetimes, UUIDs, decimals,
and containers of them). Decoding rebuilds the value as the type it was declared with — the function's
return annotation — so a replayed step result equals the original. When there is no annotation, the
runtime type of a top-level model, dataclass, date/time, UUID or decimal is recorded as a tag instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import functools
import importlib
import json
import typing
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from polos.errors import StepResultError

MAX_RESULT_BYTES = 350 * 1024
_TAGGABLE = (BaseModel, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID, decimal.Decimal)


def to_json(value: Any, *, what: str, limit: int = MAX_RESULT_BYTES) -> str:
    """Compact JSON for ``value``; :class:`StepResultError` naming ``what`` when it cannot be journaled."""
    try:
        plain = to_jsonable_python(value, by_alias=True)  # models validate back from their aliases
        text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        if "surrogates not allowed" in str(exc):  # pydantic met a lone surrogate in a dict key
            raise StepResultError(f"{what} contains a lone surrogate; text must be valid Unicode") from exc
        raise StepResultError(f"{what} is not JSON-serialisable: {exc}") from exc
    problem = unicode_problem(text)
    if problem is not None:
        raise StepResultError(f"{what} {problem}")
    size = len(text.encode())
    if size > limit:
        raise StepResultError(f"{what} is {size} bytes serialised; at most {limit} bytes can be journaled")
    return text


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not Unicode that UTF-8 (DynamoDB, SQS, HTTP) can carry, or ``None`` when it is.

    Python strings may hold lone surrogates (JSON's ``"\\ud800"`` parses to one); no AWS service stores them.
    """
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return (
            f"contains a lone surrogate U+{ord(text[exc.start]):04X} (at character {exc.start}); "
            "text must be valid Unicode"
        )
    return None


def declared_type(fn: Callable[..., Any]) -> Any:
    """The return annotation of ``fn`` (unwrapping partials), or ``None`` when there is none to use."""
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolved forward references, builtins without signatures
        return None
    annotation = hints.get("return")
    if annotation is None or annotation is type(None) or annotation is Any:
        return None
    # ``async def f() -> User`` is annotated with ``User``; an awaitable wrapper is not a result type.
    if typing.get_origin(annotation) in (typing.Awaitable, typing.Coroutine):
        return None
    # A type pydantic cannot validate into (an arbitrary class) gives no help in rebuilding the value.
    return annotation if _adapter(annotation) is not None else None


def type_tag(value: Any) -> str | None:
    """``module:qualname`` of a top-level value whose type JSON alone would lose, else ``None``."""
    cls = type(value)
    if isinstance(value, _TAGGABLE) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        if "<locals>" in cls.__qualname__:
            return None
        return f"{cls.__module__}:{cls.__qualname__}"
    return None


def resolve_tag(tag: str | None) -> Any:
    """The type a :func:`type_tag` names, or ``None`` when it cannot be imported."""
    if not tag:
        return None
    module_name, _, qualname = tag.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return target if isinstance(target, type) else None


def _adapter(type_: Any) -> TypeAdapter[Any] | None:
    """A (cached) validator for ``type_``, or ``None`` when pydantic cannot build one."""
    try:
        try:
            return _cached_adapter(type_)
        except TypeError:  # an unhashable annotation: build it uncached
            return TypeAdapter(type_)
    except Exception:  # pydantic cannot validate into this type (an arbitrary class, a bare TypeVar, ...)
        return None


@functools.lru_cache(maxsize=512)
def _cached_adapter(type_: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_)


def from_json(text: str, type_: Any = None, *, what: str = "journaled value") -> Any:
    """Parse journal JSON, rebuilding it as ``type_`` when one is given.

    :class:`StepResultError` naming ``what`` when the value does not fit ``type_`` (a wrong annotation).
    """
    value = json.loads(text)
    adapter = None if type_ is None else _adapter(type_)
    if adapter is None:
        return value
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise StepResultError(f"{what} does not fit its declared type {type_!r}: {exc}") from exc

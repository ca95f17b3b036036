"""The one serializer: journal JSON out, the declared type back in, and its limits."""

import dataclasses
import datetime as dt
import decimal
import functools
import json
import uuid
from typing import Any

import pytest
from polos import serde
from polos.errors import NonRetryableError, StepResultError
from pydantic import BaseModel, Field


class Profile(BaseModel):
    id: str
    tags: list[str] = []
    joined: dt.datetime | None = None


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Aliased(BaseModel):
    user_id: str = Field(alias="userId")


class Opaque:
    """A class pydantic cannot validate into."""


def roundtrip(value: Any, type_: Any = None) -> Any:
    return serde.from_json(serde.to_json(value, what="value"), type_)


@pytest.mark.parametrize("value", [0, 0.0, "", [], {}, False, None])
def test_falsy_values_round_trip_exactly(value: Any) -> None:
    back = roundtrip(value)
    assert back == value and type(back) is type(value)


def test_json_is_compact_and_keeps_unicode() -> None:
    assert serde.to_json({"a": [1, 2], "é": "ü"}, what="v") == '{"a":[1,2],"é":"ü"}'


def test_declared_types_are_rebuilt() -> None:
    moment = dt.datetime(2025, 1, 28, 10, 30, tzinfo=dt.UTC)
    profile = Profile(id="u1", tags=["a"], joined=moment)
    assert roundtrip(profile, Profile) == profile
    assert roundtrip(Point(1, 2.5), Point) == Point(1, 2.5)
    assert roundtrip(moment, dt.datetime) == moment
    assert roundtrip([profile, profile], list[Profile]) == [profile, profile]
    assert roundtrip({"p": Point(3, 4.0)}, dict[str, Point]) == {"p": Point(3, 4.0)}
    assert roundtrip({"when": [moment]}, dict[str, list[dt.datetime]]) == {"when": [moment]}
    assert roundtrip((1, "a"), tuple[int, str]) == (1, "a")
    assert roundtrip({3, 1}, set[int]) == {1, 3}
    assert roundtrip(decimal.Decimal("1.10"), decimal.Decimal) == decimal.Decimal("1.10")
    value = uuid.uuid4()
    assert roundtrip(value, uuid.UUID) == value


def test_aliased_models_round_trip() -> None:
    value = Aliased(userId="u1")
    assert serde.to_json(value, what="v") == '{"userId":"u1"}'
    assert roundtrip(value, Aliased) == value
    assert roundtrip([value], list[Aliased]) == [value]


def test_without_a_type_the_plain_json_comes_back() -> None:
    assert roundtrip(Profile(id="u1")) == {"id": "u1", "tags": [], "joined": None}
    assert roundtrip(Point(1, 2.0)) == {"x": 1, "y": 2.0}


def test_value_not_fitting_its_declared_type_is_a_clear_error() -> None:
    with pytest.raises(
        StepResultError, match=r"^result of step 'k' does not fit its declared type .*Profile.*id"
    ):
        serde.from_json('{"name": "x"}', Profile, what="result of step 'k'")


# ---- declared_type ---------------------------------------------------------------------------------


def returns_profile() -> Profile:
    return Profile(id="x")


async def returns_points() -> list[Point]:
    return []


def returns_nothing() -> None:
    return None


def returns_any() -> Any:
    return 1


def returns_opaque() -> Opaque:
    return Opaque()


def unannotated():  # type: ignore[no-untyped-def]
    return 1


def takes_args(a: int, b: int) -> dict[str, int]:
    return {"a": a, "b": b}


def test_declared_type_reads_the_return_annotation() -> None:
    assert serde.declared_type(returns_profile) is Profile
    assert serde.declared_type(returns_points) == list[Point]  # async: the awaited type
    assert serde.declared_type(functools.partial(takes_args, 1)) == dict[str, int]
    assert serde.declared_type(Profile(id="m").model_dump) == dict[str, Any]  # bound method


@pytest.mark.parametrize(
    "fn", [returns_nothing, returns_any, returns_opaque, unannotated, lambda: 1, len, print, Profile]
)
def test_declared_type_is_none_when_it_cannot_help(fn: Any) -> None:
    assert serde.declared_type(fn) is None


# ---- type tags (no annotation) ---------------------------------------------------------------------


def test_type_tags_name_importable_types() -> None:
    tag = serde.type_tag(Profile(id="u"))
    assert tag == f"{Profile.__module__}:Profile"
    assert serde.resolve_tag(tag) is Profile
    assert serde.resolve_tag(serde.type_tag(Point(1, 1.0))) is Point
    assert serde.resolve_tag(serde.type_tag(dt.datetime.now(dt.UTC))) is dt.datetime
    assert serde.resolve_tag(serde.type_tag(dt.date.today())) is dt.date


def test_no_tag_for_plain_json_or_local_types() -> None:
    @dataclasses.dataclass
    class Local:
        a: int

    for value in ({"a": 1}, [Profile(id="u")], 1, "s", None, True, Local(1)):
        assert serde.type_tag(value) is None


@pytest.mark.parametrize(
    "tag", [None, "", "no_such_module_xyz:Thing", f"{__name__}:Missing", f"{__name__}:returns_any"]
)
def test_unresolvable_tags_give_none(tag: str | None) -> None:
    assert serde.resolve_tag(tag) is None


# ---- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [object(), {"f": lambda: 1}, float("nan"), {"inf": float("inf")}, Opaque()])
def test_not_serialisable_is_a_clear_error(value: Any) -> None:
    with pytest.raises(StepResultError, match=r"^result of step 'save' is not JSON-serialisable: "):
        serde.to_json(value, what="result of step 'save'")


def test_size_limit_is_350_kb() -> None:
    assert serde.MAX_RESULT_BYTES == 350 * 1024
    overhead = len(json.dumps(""))  # the quotes
    exact = "x" * (serde.MAX_RESULT_BYTES - overhead)
    assert len(serde.to_json(exact, what="v").encode()) == serde.MAX_RESULT_BYTES
    with pytest.raises(
        StepResultError,
        match=r"^result of step 'big' is 358401 bytes serialised; at most 358400 bytes can be journaled$",
    ):
        serde.to_json(exact + "x", what="result of step 'big'")


def test_size_counts_utf8_bytes() -> None:
    with pytest.raises(StepResultError, match=r"bytes serialised"):
        serde.to_json("é" * (serde.MAX_RESULT_BYTES // 2), what="v")


def test_step_result_error_is_not_retryable() -> None:
    assert issubclass(StepResultError, NonRetryableError)

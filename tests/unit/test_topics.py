"""The one topic parser: validation and canonicalisation."""

import pytest
from polos.errors import InvalidTopicError
from polos.topics import MAX_TOPIC_LENGTH, canonical_topic


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("user/signup", "user/signup"),
        ("user.signup", "user/signup"),
        ("a.b/c.d", "a/b/c/d"),
        ("single", "single"),
        ("Order-Created_2", "Order-Created_2"),
        ("notifications/high_priority", "notifications/high_priority"),
    ],
)
def test_canonical_form_uses_slashes(given: str, canonical: str) -> None:
    assert canonical_topic(given) == canonical


def test_dot_and_slash_name_one_topic_and_matching_is_case_sensitive() -> None:
    assert canonical_topic("user.signup") == canonical_topic("user/signup")
    assert canonical_topic("User/Signup") != canonical_topic("user/signup")


def test_length_limit_is_256_characters() -> None:
    longest = "a" * 128 + "/" + "b" * 127
    assert len(longest) == MAX_TOPIC_LENGTH == 256
    assert canonical_topic(longest) == longest
    with pytest.raises(InvalidTopicError, match=r"^topic is 257 characters long; at most 256 are allowed$"):
        canonical_topic(longest + "b")


@pytest.mark.parametrize(
    "bad",
    [
        "/user",
        "user/",
        "user//signup",
        "user./signup",
        ".",
        "user signup",
        "user/sign*up",
        "émoji",
        "a\nb",
        "user/\n",
    ],
)
def test_bad_characters_and_empty_segments(bad: str) -> None:
    with pytest.raises(InvalidTopicError, match=r"topic .* is invalid: use segments of letters, digits"):
        canonical_topic(bad)


def test_empty_topic() -> None:
    with pytest.raises(InvalidTopicError, match=r"^topic must not be empty$"):
        canonical_topic("")


@pytest.mark.parametrize("value", [None, 3, b"user/signup", ["user"]])
def test_non_string_topic(value: object) -> None:
    with pytest.raises(InvalidTopicError, match=r"^topic must be a string, got "):
        canonical_topic(value)


def test_field_name_appears_in_messages() -> None:
    with pytest.raises(InvalidTopicError, match=r"^trigger_on_event must not be empty$"):
        canonical_topic("", field="trigger_on_event")


def test_invalid_topic_error_is_a_value_error() -> None:
    assert issubclass(InvalidTopicError, ValueError)

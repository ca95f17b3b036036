"""``--aws-faults`` / ``aws_faults=``: one parser, every bad token named."""

from __future__ import annotations

import pytest

from infra.local.faults.config import (
    DEFAULT_DUPLICATE_RATE,
    DEFAULT_POLLERS,
    DEFAULT_THROTTLE_RATE,
    AwsFaults,
    FaultsError,
)


def test_all_turns_every_fault_on_with_default_rates_and_keeps_the_seed() -> None:
    faults = AwsFaults.parse("all", seed=42)
    assert faults == AwsFaults(
        shuffle=True,
        duplicates=DEFAULT_DUPLICATE_RATE,
        pollers=DEFAULT_POLLERS,
        throttle=DEFAULT_THROTTLE_RATE,
        iam=True,
        limits=True,
        seed=42,
    )
    assert AwsFaults.parse(faults.describe(), seed=42) == faults


def test_a_list_with_rates_sets_only_those_and_all_keeps_rates_given_before_it() -> None:
    faults = AwsFaults.parse(" shuffle, duplicates=0.2 ,pollers=3,throttle=0", seed=1)
    assert (faults.shuffle, faults.duplicates, faults.pollers, faults.throttle) == (True, 0.2, 3, 0.0)
    assert not faults.iam and not faults.limits and faults.enabled
    assert AwsFaults.parse("throttle=0.5,all", seed=1).throttle == 0.5


def test_nothing_is_on_by_default_and_a_seed_is_drawn_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POLOS_AWS_FAULTS", raising=False)
    monkeypatch.delenv("POLOS_FAULTS_SEED", raising=False)
    assert not AwsFaults.resolve().enabled
    assert AwsFaults.parse("none").describe() == "none"
    monkeypatch.setenv("POLOS_AWS_FAULTS", "shuffle")
    monkeypatch.setenv("POLOS_FAULTS_SEED", "7")
    assert AwsFaults.resolve() == AwsFaults(shuffle=True, seed=7)
    assert AwsFaults.resolve("limits", 3) == AwsFaults(limits=True, seed=3)


@pytest.mark.parametrize(
    ("text", "seed", "message"),
    [
        ("shufle", None, "unknown AWS fault 'shufle'"),
        ("duplicates=lots", None, "the rate of 'duplicates=lots' must be a number from 0 to 1, got 'lots'"),
        ("throttle=1.5", None, "the rate of 'throttle=1.5' must be from 0 to 1, got 1.5"),
        ("pollers=0", None, "pollers must be 1 to 32 per queue, got 0"),
        ("pollers=2.5", None, "pollers takes a whole number of pollers per queue, got '2.5'"),
        ("iam=1", None, "AWS fault 'iam' takes no value, got 'iam=1'"),
        ("all", "abc", "the faults seed must be an integer, got 'abc'"),
    ],
)
def test_a_bad_token_is_named(text: str, seed: str | None, message: str) -> None:
    with pytest.raises(FaultsError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        AwsFaults.parse(text, seed)


@pytest.mark.parametrize("command", ["dev", "demo"])
def test_polos_dev_and_demo_refuse_a_bad_list_naming_it(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.cli.main import main

    assert main([command, "--aws-faults", "shuffle,throttle=2"]) == 2
    assert capsys.readouterr().err == (
        f"polos {command}: the rate of 'throttle=2' must be from 0 to 1, got 2\n"
    )

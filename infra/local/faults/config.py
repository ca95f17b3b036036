"""The one parser of ``--aws-faults`` / ``aws_faults=``: ``all`` or a comma list with optional rates.

``shuffle,duplicates=0.05,pollers=4,throttle=0.1,iam,limits``; ``POLOS_AWS_FAULTS`` and
``POLOS_FAULTS_SEED`` give the same to ``polos dev`` and ``polos.testing`` when they are not passed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields, replace

ENV_AWS_FAULTS = "POLOS_AWS_FAULTS"
ENV_FAULTS_SEED = "POLOS_FAULTS_SEED"

FAULT_NAMES = ("shuffle", "duplicates", "pollers", "throttle", "iam", "limits")
DEFAULT_DUPLICATE_RATE = 0.05  # a share of messages delivered twice
DEFAULT_POLLERS = 4  # concurrent pollers per queue (AWS starts with 5 and adds more)
DEFAULT_THROTTLE_RATE = 0.05  # random throttles on top of the per-partition-key budget
MAX_POLLERS = 32


class FaultsError(ValueError):
    """A fault list or seed that cannot be parsed; the message names the bad entry."""


@dataclass(frozen=True)
class AwsFaults:
    """Which of AWS's faults are on (``None`` / ``False``: off) and the seed of their randomness."""

    shuffle: bool = False
    duplicates: float | None = None  # share of received messages delivered a second time
    pollers: int | None = None  # pollers per queue
    throttle: float | None = None  # random throttle rate; the partition budgets hold whenever it is set
    iam: bool = False
    limits: bool = False
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) not in (None, False) for name in FAULT_NAMES)

    @property
    def poller_count(self) -> int:
        return self.pollers or 1

    def describe(self) -> str:
        """The list as ``parse`` reads it back, e.g. ``shuffle,duplicates=0.05,pollers=4``."""
        parts: list[str] = []
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "seed" or value in (None, False):
                continue
            parts.append(field.name if value is True else f"{field.name}={value:g}")
        return ",".join(parts) or "none"

    @classmethod
    def parse(cls, text: str | None, seed: int | str | None = None) -> AwsFaults:
        """``all``, ``none``/empty, or a comma list of names with optional ``=rate`` (``=N`` for pollers).
        ``seed`` defaults to a random one. :class:`FaultsError` names the bad entry."""
        faults = cls(seed=_seed(seed))
        for raw in (text or "").split(","):
            entry = raw.strip()
            if not entry or entry == "none":
                continue
            if entry == "all":
                faults = replace(
                    faults,
                    shuffle=True,
                    duplicates=faults.duplicates or DEFAULT_DUPLICATE_RATE,
                    pollers=faults.pollers or DEFAULT_POLLERS,
                    throttle=faults.throttle if faults.throttle is not None else DEFAULT_THROTTLE_RATE,
                    iam=True,
                    limits=True,
                )
                continue
            name, has_value, value = (part.strip() for part in entry.partition("="))
            if name not in FAULT_NAMES:
                raise FaultsError(
                    f"unknown AWS fault {name!r} in {text!r}; the faults are all, {', '.join(FAULT_NAMES)}"
                )
            if has_value and name in ("shuffle", "iam", "limits"):
                raise FaultsError(f"AWS fault {name!r} takes no value, got {entry!r}")
            if name == "pollers":
                faults = replace(faults, pollers=_pollers(value) if has_value else DEFAULT_POLLERS)
            elif name == "duplicates":
                rate = _rate(entry, value) if has_value else DEFAULT_DUPLICATE_RATE
                faults = replace(faults, duplicates=rate)
            elif name == "throttle":
                rate = _rate(entry, value) if has_value else DEFAULT_THROTTLE_RATE
                faults = replace(faults, throttle=rate)
            else:
                faults = replace(faults, **{name: True})
        return faults

    @classmethod
    def resolve(cls, text: str | None = None, seed: int | str | None = None) -> AwsFaults:
        """``text`` and ``seed`` where given, else ``POLOS_AWS_FAULTS`` and ``POLOS_FAULTS_SEED`` (off when
        unset): how ``polos dev`` and ``polos.testing`` run a whole suite under faults."""
        return cls.parse(
            text if text is not None else os.environ.get(ENV_AWS_FAULTS),
            seed if seed is not None else os.environ.get(ENV_FAULTS_SEED) or None,
        )


def _seed(seed: int | str | None) -> int:
    if seed is None:
        return secrets.randbelow(2**31)
    try:
        return int(seed)
    except ValueError:
        raise FaultsError(f"the faults seed must be an integer, got {seed!r}") from None


def _rate(entry: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise FaultsError(f"the rate of {entry!r} must be a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise FaultsError(f"the rate of {entry!r} must be from 0 to 1, got {rate:g}")
    return rate


def _pollers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise FaultsError(f"pollers takes a whole number of pollers per queue, got {value!r}") from None
    if not 1 <= count <= MAX_POLLERS:
        raise FaultsError(f"pollers must be 1 to {MAX_POLLERS} per queue, got {count}")
    return count

"""The moto server process's collector: a full collection freezes its survivors, which later full
collections no longer scan, and released objects are still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from infra.local import moto_gc


class _Held:
    """A tracked object standing for a stored item."""


@pytest.fixture
def collector() -> Iterator[None]:
    was = moto_gc.installed()
    moto_gc.uninstall()
    yield
    moto_gc.uninstall()
    if was:
        moto_gc.install()


def test_survivors_of_a_full_collection_are_frozen(collector: None) -> None:
    held = [_Held() for _ in range(10_000)]
    gc.collect()
    assert gc.get_freeze_count() == 0  # moto's own process: nothing frozen
    moto_gc.install()
    gc.collect()
    frozen = gc.get_freeze_count()
    assert frozen >= len(held)
    assert sum(1 for obj in gc.get_objects() if isinstance(obj, _Held)) == 0  # no longer scanned
    gc.collect(1)  # a younger collection freezes nothing more
    assert gc.get_freeze_count() == frozen


def test_frozen_objects_are_still_freed_when_released(collector: None) -> None:
    moto_gc.install()
    held = _Held()
    watched = weakref.ref(held)
    gc.collect()
    assert gc.get_freeze_count() > 0
    del held
    assert watched() is None


def test_uninstall_unfreezes(collector: None) -> None:
    moto_gc.install()
    gc.collect()
    moto_gc.uninstall()
    assert gc.get_freeze_count() == 0 and not moto_gc.installed()

"""The memory bench measures the handler's process, not the process that runs the bench."""

from __future__ import annotations

from bench import memory

PARENT_MB = 300


def test_the_import_figure_does_not_inherit_the_benchs_own_size() -> None:
    alone = memory._import_mb("api")
    ballast = bytearray(PARENT_MB * 1024 * 1024)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: resident, not just reserved
    beside_a_big_parent = memory._import_mb("api")
    del ballast
    # ru_maxrss would have started the child at this process's size (> PARENT_MB).
    assert beside_a_big_parent < alone * 1.5 < PARENT_MB

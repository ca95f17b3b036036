"""A cold start's imports without the cyclic garbage collector.

A handler's imports (botocore, pydantic, Powertools, the runtime) allocate ~70,000 objects, nearly all of
them kept for the life of the process; on the way CPython runs ~100 young-generation collections that
free next to nothing: ~15 ms of a ~200 ms worker import (issue 12, ``bench/coldstart.py``). Entry points
run their imports inside :func:`cold_imports`: the collector is paused, the survivors are frozen (moved
to the permanent generation, so no later collection walks them again) and the collector is resumed,
also when an import fails. Reference counting frees everything not in a cycle throughout.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cold_imports() -> Iterator[None]:
    """Run the ``with`` block's imports with the cyclic GC paused; freeze what they made, then resume it.

    The collector is left as it was found: a caller that had disabled it keeps it disabled.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()

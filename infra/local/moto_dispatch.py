"""moto's server answering a request without listing every member of its response class first.

To find the method of a request's action, ``BaseResponse.call_action`` asks
``method_names_from_class(self.__class__)``: ``inspect.getmembers`` over the class, which reads and tests
every attribute of it and its bases (hundreds for ``DynamoHandler``) and builds their list, on every
request, only to test one name with ``in``. Patched: ``moto.core.responses`` gets a
``method_names_from_class`` whose answer tests that one name the same way ``getmembers`` would (it is
among ``dir(cls)``, i.e. defined on the class or a base; ``getattr`` gives it without
``AttributeError``; it is a plain function). Nothing is cached: a method added or patched later is
seen on the next request, as with moto's own list.

``install()`` / ``uninstall()`` / ``installed()``; ``tests/local/test_moto_dispatch.py`` checks the
answer equals moto's list for every name of moto's response classes.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

_NAME = "method_names_from_class"  # the name moto.core.responses imported and calls
_originals: dict[str, Any] = {}
_lock = threading.Lock()


class MethodNames:
    """The plain-function members of ``cls``, as ``in`` tests them (what ``call_action`` does)."""

    def __init__(self, cls: type) -> None:
        self._cls = cls

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not any(name in k.__dict__ for k in self._cls.__mro__):
            return False  # not among dir(cls): the class's and its bases' own attributes
        try:
            value = getattr(self._cls, name)
        except AttributeError:  # getmembers leaves such a name out
            return False
        return inspect.isfunction(value)


def method_names_from_class(clazz: type) -> MethodNames:
    return MethodNames(clazz)


def install() -> None:
    """Patch the name ``moto.core.responses`` calls (idempotent)."""
    from moto.core import responses

    with _lock:
        if _originals:
            return
        _originals[_NAME] = getattr(responses, _NAME)
        setattr(responses, _NAME, method_names_from_class)


def uninstall() -> None:
    """Restore moto's own list (idempotent)."""
    from moto.core import responses

    with _lock:
        if _originals:
            setattr(responses, _NAME, _originals.pop(_NAME))


def installed() -> bool:
    return bool(_originals)

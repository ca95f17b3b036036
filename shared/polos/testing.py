"""Test your workflows in pytest: the whole product in-process on moto, with failure injection.

``local_stack(app)`` creates the app's tables and queues in moto's in-process AWS mock, exactly as the
template would deploy them, and gives a ``Stack``: publish and invoke through the real API
handler, ``drain()`` the queues through the real worker (the event source mapping emulation of
``polos dev``), read runs and events as the HTTP API shows them, and inject failures::

    from polos.testing import local_stack

    def test_signup_is_onboarded():
        with local_stack("workflows") as stack:
            stack.publish("user/signup", [{"data": {"user_id": "u1", "email": "u1@example.com"}}])
            stack.drain()
            (run,) = stack.runs("user-signup-handler")
            assert run["status"] == "completed"

This module is the one door from the library to the local stack (``infra.local.testing``, which needs
the dev dependencies, moto among them): it loads it on first use, so the Lambda layer never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.local.testing import InjectedFailure, SimulatedCrash, Stack, local_stack

__all__ = ["InjectedFailure", "SimulatedCrash", "Stack", "local_stack"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'polos.testing' has no attribute {name!r}")
    from infra.local import testing as harness  # the door, opened on first use (tests only)

    return getattr(harness, name)

"""The cold-start bench's first call runs each handler's real path (AWS stubbed), not an early refusal."""

from __future__ import annotations

import json

import pytest

from bench import coldstart


@pytest.mark.parametrize("name", ["api", "worker"])
def test_first_call_goes_the_whole_way(name: str) -> None:
    """The API answers the publish 200 (its key accepted, the event stored and fanned out); the worker's
    run completes. A deferred import on that path is therefore timed in the *import + 1st call* row."""
    (target,) = [t for t in coldstart.targets() if t.label == f"functions/{name}/app.py"]
    done = coldstart._run(target.invoking, coldstart.lambda_env())
    assert done.returncode == 0 and "first call raised" not in done.stderr, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if name == "api":
        assert [line["status"] for line in lines if line.get("message") == "request"] == [200]
    else:
        assert [line["message"] for line in lines if line.get("message", "").startswith("run ")] == [
            "run completed"
        ]

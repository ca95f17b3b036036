"""The cold-start bench's first call runs each handler's real path (AWS stubbed), not an early refusal."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench import coldstart


@pytest.mark.parametrize("name", ["api", "worker"])
def test_first_call_goes_the_whole_way(name: str) -> None:
    """The API answers the publish 200 (its key accepted, the event stored and fanned out); the worker's
    run completes. A deferred import on that path is therefore timed in the *import + 1st call* row."""
    (target,) = [t for t in coldstart.targets() if t.label == f"functions/{name}/app.py"]
    # At DEBUG, so the run's completion (a DEBUG line since issue 26) is in the log.
    done = coldstart._run(target.invoking, {**coldstart.lambda_env(), "POWERTOOLS_LOG_LEVEL": "DEBUG"})
    assert done.returncode == 0 and "first call raised" not in done.stderr, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if name == "api":
        assert [line["status"] for line in lines if line.get("message") == "request"] == [200]
    else:
        assert [line["message"] for line in lines if line.get("message", "").startswith("run ")] == [
            "run attempt started",
            "run completed",
        ]


def test_no_bytecode_probe_compiles_the_layer_and_function_from_source() -> None:
    """The *no bytecode* row imports every module of the layer (polos, pydantic, Powertools, the layer's own
    botocore, ...) and of the function package from source, and writes no bytecode a later sample could use;
    the standard library (and boto3) stay compiled, as Lambda's runtime ships them."""
    (target,) = [t for t in coldstart.targets() if t.label == "functions/api/app.py"]
    with coldstart.source_only_code() as root:
        paths = (str(root / "functions" / "api"), str(root / "functions"), str(root / "layer"))
        probe = dataclasses.replace(target, paths=paths, bytecode=False)
        done = coldstart._run(probe, coldstart.lambda_env(), "-v")
        assert done.returncode == 0, done.stderr[-2000:]
        loaded = [
            line.removeprefix("# code object from ").strip("'")
            for line in done.stderr.splitlines()
            if line.startswith("# code object from ")
        ]
        copied = [path for path in loaded if path.startswith(str(root))]
        assert copied and all(path.endswith(".py") for path in copied)
        for package in ("functions/api/app.py", "layer/polos/", "layer/pydantic/", "layer/botocore/"):
            assert any(path.startswith(f"{root}/{package}") for path in copied), package
        outside = [path for path in loaded if not path.startswith(str(root))]  # the runtime's: compiled
        assert outside and all(path.endswith(".pyc") for path in outside)
        assert not list(root.rglob("__pycache__"))


def test_layer_distributions_follow_the_requirements() -> None:
    """What `sam build` puts in the layer: the requirements, their extras' and their dependencies."""
    names = {d.metadata["Name"].lower().replace("_", "-") for d in coldstart.layer_distributions()}
    expected = {"aws-lambda-powertools", "aws-xray-sdk", "botocore", "pydantic", "pydantic-core", "croniter"}
    assert expected <= names
    assert "boto3" not in names  # the runtime's

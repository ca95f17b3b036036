"""`sam build` ships bytecode: the layer and the functions are built by rendered Makefiles that compile every
module for the runtime (python3.12) as unchecked-hash .pyc files, and `infra.bytecode` refuses a build
without them. (`make sam-check` runs the real `sam build` and the check; these tests stay offline.)"""

from __future__ import annotations

import os
import py_compile
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import bytecode
from infra.model import AppModel, build_model
from infra.template import (
    BUILD_MAKEFILE,
    BYTECODE_TAG,
    FUNCTIONS_DIR,
    LAYER_DIR,
    LAYER_ID,
    PYTHON,
    render_files,
    render_template,
)
from tests.template.test_stack import APP

ROOT = Path(__file__).resolve().parents[2]
MODEL: AppModel = build_model(APP)
ZIP_EPOCH = 315_532_800  # 1980-01-01: the oldest time a zip entry holds


def _runtime_python() -> str | None:
    """A directory holding a working ``python3.12`` (PATH, else pyenv's), as `sam build` needs one."""
    candidates = [shutil.which(PYTHON), *sorted(Path.home().glob(f".pyenv/versions/3.12*/bin/{PYTHON}"))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return str(Path(candidate).parent)
    return None


def test_layer_and_functions_are_built_by_makefiles() -> None:
    resources = render_template(MODEL, "tests")["Resources"]
    built = [LAYER_ID, *(spec.logical_id for spec in MODEL.functions)]
    assert all(resources[name]["Metadata"]["BuildMethod"] == "makefile" for name in built)
    assert resources[LAYER_ID]["Metadata"]["BuildArchitecture"] == "arm64"  # else SAM assumes x86_64
    files = render_files(MODEL, "tests")
    layer, functions = files[f"{LAYER_DIR}/{BUILD_MAKEFILE}"], files[f"{FUNCTIONS_DIR}/{BUILD_MAKEFILE}"]
    assert f"build-{LAYER_ID}:" in layer
    assert f"build-{' build-'.join(spec.logical_id for spec in MODEL.functions)}:" in functions
    compile_line = 'python3.12 -m compileall -q -f -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)'
    assert f'{compile_line}/python"' in layer and f'{compile_line}"' in functions
    # The dependencies: wheels for Lambda's arm64 Python 3.12, whatever machine builds them.
    pip = next(line for line in layer.splitlines() if " -m pip install " in line)
    for option in ("--platform manylinux2014_aarch64", "--python-version 3.12", "--only-binary=:all:"):
        assert option in pip


def test_checked_in_makefiles_are_rendered() -> None:
    """`polos template --check` covers them; this names the file that drifted."""
    from infra.cli.main import main

    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        assert main(["template", "--check"]) == 0
    finally:
        os.chdir(cwd)
    for path in (f"{LAYER_DIR}/{BUILD_MAKEFILE}", f"{FUNCTIONS_DIR}/{BUILD_MAKEFILE}"):
        assert (ROOT / path).is_file()


def test_functions_target_ships_bytecode_used_despite_zip_mtimes(tmp_path: Path) -> None:
    """The functions' target, run as `sam build` runs it (a copy of the directory, ARTIFACTS_DIR set), leaves
    an unchecked-hash .pyc for every module, and python3.12 loads them after the sources' mtimes moved."""
    python_dir = _runtime_python()
    if python_dir is None:
        pytest.skip(f"no working {PYTHON} on PATH or under ~/.pyenv (sam build needs one too)")
    scratch, artifacts = tmp_path / "scratch", tmp_path / "artifacts"
    shutil.copytree(ROOT / FUNCTIONS_DIR, scratch)
    (scratch / "probe_module.py").write_text("VALUE = 1\n")  # imports nothing (python3.12 has no polos)
    artifacts.mkdir()
    env = {
        **os.environ,
        "PATH": f"{python_dir}{os.pathsep}{os.environ['PATH']}",
        "ARTIFACTS_DIR": str(artifacts),
    }
    env.pop("PYENV_VERSION", None)
    target = f"build-{MODEL.functions[0].logical_id}"
    done = subprocess.run(
        ["make", "--makefile", str(ROOT / FUNCTIONS_DIR / BUILD_MAKEFILE), target],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert not (artifacts / BUILD_MAKEFILE).exists()
    assert (artifacts / "worker" / "app.py").is_file()
    assert bytecode.problems(artifacts) == []
    assert {p.name.split(".")[1] for p in artifacts.rglob("*.pyc")} == {BYTECODE_TAG}  # no local caches
    for source in artifacts.rglob("*.py"):
        os.utime(source, (ZIP_EPOCH, ZIP_EPOCH))
    loaded = subprocess.run(
        [
            f"{python_dir}/{PYTHON}",
            "-I",
            "-B",
            "-v",
            "-c",
            f"import sys; sys.path[:0] = [{str(artifacts)!r}]; import probe_module",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    pyc = artifacts / "__pycache__" / f"probe_module.{BYTECODE_TAG}.pyc"
    assert f"code object from {str(pyc)!r}" in loaded.stderr


def _module(root: Path, name: str, mode: py_compile.PycInvalidationMode | None) -> None:
    source = root / "pkg" / f"{name}.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("VALUE = 1\n")
    if mode is not None:
        cfile = source.parent / "__pycache__" / f"{name}.{BYTECODE_TAG}.pyc"
        py_compile.compile(str(source), cfile=str(cfile), invalidation_mode=mode, doraise=True)


def test_check_lists_modules_without_usable_bytecode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _module(tmp_path, "good", py_compile.PycInvalidationMode.UNCHECKED_HASH)
    _module(tmp_path, "missing", None)
    _module(tmp_path, "timestamp", py_compile.PycInvalidationMode.TIMESTAMP)
    _module(tmp_path, "checked", py_compile.PycInvalidationMode.CHECKED_HASH)
    assert bytecode.problems(tmp_path) == [
        "pkg/checked.py: checked.cpython-312.pyc is not unchecked-hash (flags 3)",
        f"pkg/missing.py: no pkg/__pycache__/missing.{BYTECODE_TAG}.pyc",
        "pkg/timestamp.py: timestamp.cpython-312.pyc is not unchecked-hash (flags 0)",
    ]
    assert bytecode.main([str(tmp_path)]) == 1
    assert "3 of 4 modules" in capsys.readouterr().err
    (tmp_path / "pkg" / "missing.py").unlink()
    for name in ("timestamp", "checked"):
        _module(tmp_path, name, py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert bytecode.main([str(tmp_path)]) == 0
    assert bytecode.main([str(tmp_path / "pkg" / "__pycache__")]) == 1  # no source at all: nothing was built

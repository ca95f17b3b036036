"""The import layers of pyproject.toml hold, and `lint-imports` fails when a change breaks one of them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages the contracts cover and the config, copied, so a test may break them."""
    base = tmp_path_factory.mktemp("layers")
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "shared" / "polos", base / "shared" / "polos", ignore=skip)
    for package in ("infra", "bench"):
        shutil.copytree(ROOT / package, base / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    return base


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": f"{tree / 'shared'}:{tree}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def broken_copy(clean: Path, tmp_path: Path, module: str, line: str) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(clean, tree)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return tree


def test_the_repository_keeps_every_contract() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


def test_the_clean_copy_passes(clean_copy: Path) -> None:
    result = lint(clean_copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # the public face reaching into the worker at import time
        ("shared/polos/payloads.py", "from polos.runtime import worker", "The public face does not import"),
        # a lower layer importing a higher one (the AWS plumbing importing the publish side)
        ("shared/polos/aws/chunking.py", "from polos.publish import fanout", "imports go down the layers"),
        # the Lambda layer importing dev code
        ("shared/polos/aws/settings.py", "import moto", "never imports dev code"),
        ("shared/polos/runtime/journal.py", "from infra import model", "never imports dev code"),
        # a cycle between siblings of infra: the model importing the local stack, which imports the model
        ("infra/model.py", "from infra.local import resources", "No import cycle"),
        # imports only type checkers see count too: the face naming a runtime type is a dependency
        (
            "shared/polos/context.py",
            "if TYPE_CHECKING:\n    from polos.runtime.worker import Invocation",
            "The public face does not import",
        ),
    ],
)
def test_a_wrong_import_breaks_its_contract(
    clean_copy: Path, tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = lint(broken_copy(clean_copy, tmp_path, module, line))
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout

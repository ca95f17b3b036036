"""Check that a ``sam build`` output ships bytecode for every module: ``python -m infra.bytecode DIR``.

Lambda cannot write ``__pycache__`` into its read-only code directories, so a module shipped without its
``.pyc`` is compiled from source on every cold start. ``make sam-check`` runs this on ``.aws-sam/build``
after ``sam build``; it fails listing each ``.py`` whose ``.pyc`` for the runtime is missing or would be
checked against the source (a timestamp .pyc is stale once the zip's mtimes differ; a checked hash costs
a read and a hash of the source).
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.template import BYTECODE_TAG

# PEP 552 flags (bytes 4-8 of a .pyc): bit 0 = hash-based, bit 1 = check the source.
UNCHECKED_HASH_FLAGS = 0b01


def problems(root: Path) -> list[str]:
    """Each ``.py`` under ``root`` without an unchecked-hash ``.pyc`` for the runtime, with the reason."""
    found = []
    for source in sorted(root.rglob("*.py")):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{BYTECODE_TAG}.pyc"
        if not compiled.is_file():
            found.append(f"{source.relative_to(root)}: no {compiled.relative_to(root)}")
            continue
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        if flags != UNCHECKED_HASH_FLAGS:
            found.append(f"{source.relative_to(root)}: {compiled.name} is not unchecked-hash (flags {flags})")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m infra.bytecode BUILD_DIR (e.g. .aws-sam/build)", file=sys.stderr)
        return 2
    root = Path(argv[0])
    sources = sum(1 for _ in root.rglob("*.py"))
    if not sources:
        print(f"infra.bytecode: no .py file under {root}: nothing was built", file=sys.stderr)
        return 1
    found = problems(root)
    if found:
        print("\n".join(found), file=sys.stderr)
        print(
            f"infra.bytecode: {len(found)} of {sources} modules under {root} lack {BYTECODE_TAG} "
            "unchecked-hash bytecode: Lambda would compile them from source on every cold start",
            file=sys.stderr,
        )
        return 1
    print(f"{sources} modules under {root}, each with its {BYTECODE_TAG} unchecked-hash .pyc")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))

"""The documentation stays inside the repository and complete: a newcomer reading README → docs/ finds every
route and module without opening a file outside the repository, and every link leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PACKAGE = ROOT / "shared" / "polos"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
# The team's kit beside the repository: what a clean clone does not have.
KIT_NAMES = ("DESIGN.md",)
RELATIVE_PATH = re.compile(r"(?:\.\./)+[\w.-]*")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def links(text: str) -> list[str]:
    """Markdown link targets outside code blocks."""
    return LINK.findall(FENCE.sub("", text))


def problems_with_links(doc: Path, text: str) -> list[str]:
    """What is wrong with the links of ``text``, read at ``doc``: each must lead to a file (or anchor) inside
    the repository, and nothing may point at the team's kit beside it."""
    found = []
    for name in KIT_NAMES:
        if name in text:
            found.append(f"mentions {name!r}, which is outside the repository")
    for mention in RELATIVE_PATH.findall(text):  # in links, code or prose: ``../shared/`` from README.md
        if not (doc.parent / mention).resolve().is_relative_to(ROOT):
            found.append(f"mentions {mention!r}, which leaves the repository")
    for target in links(text):
        path = target.split("#", 1)[0]
        if not path:
            continue  # an anchor in the same page
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", path) or path.startswith("/"):
            found.append(f"links outside the repository: {target}")
            continue
        resolved = (doc.parent / path).resolve()
        if not resolved.is_relative_to(ROOT):
            found.append(f"links outside the repository: {target}")
        elif not resolved.exists():
            found.append(f"broken link: {target}")
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_docs_link_only_to_existing_files_inside_the_repository(doc: Path) -> None:
    assert problems_with_links(doc, doc.read_text()) == []


def test_the_link_check_catches_links_that_leave_or_break() -> None:
    bad = (
        "[a](../../shared/DESIGN.md) [b](../docs/missing.md) [c](https://example.com) [d](/etc/passwd) "
        "[e](guide.md#steps) [f](#top) [g](../README.md)\n```\n[h](../../outside.md)\n```\n"
    )
    found = problems_with_links(ROOT / "docs" / "probe.md", bad)  # read as if it were in docs/
    assert found == [
        "mentions 'DESIGN.md', which is outside the repository",
        "mentions '../../shared', which leaves the repository",
        "mentions '../../outside.md', which leaves the repository",
        "links outside the repository: ../../shared/DESIGN.md",
        "broken link: ../docs/missing.md",
        "links outside the repository: https://example.com",
        "links outside the repository: /etc/passwd",
    ]


def normalised(text: str) -> str:
    """Route parameters as ``{}``, so ``{run_id}`` in a doc matches ``<run_id>`` or ``{id}`` in code."""
    return re.sub(r"[{<][^}>/]+[}>]", "{}", text)


def registered_routes() -> list[str]:
    """``METHOD /path`` of every route of the API resolver (from its OpenAPI schema)."""
    from polos.api.app import app

    schema = app.get_openapi_schema()
    return sorted(
        f"{method.upper()} {path}"
        for path, item in (schema.paths or {}).items()
        for method in HTTP_METHODS
        if getattr(item, method, None) is not None
    )


def test_every_route_of_the_api_is_in_the_http_reference() -> None:
    routes = registered_routes()
    assert "POST /api/v1/events/publish" in routes and len(routes) >= 6
    # Placeholders (HTML comments) do not count: a route is documented or it is missing.
    reference = normalised(COMMENT.sub("", (ROOT / "docs" / "http-api.md").read_text()))
    missing = [route for route in routes if normalised(f"`{route}`") not in reference]
    assert missing == [], "routes missing from docs/http-api.md"


def modules() -> list[str]:
    return sorted(str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py"))


def test_every_module_of_the_package_is_in_the_architecture() -> None:
    found = modules()
    assert "shared/polos/runtime/worker.py" in found
    linked = {
        str((ROOT / "docs" / target.split("#", 1)[0]).resolve().relative_to(ROOT))
        for target in links((ROOT / "docs" / "architecture.md").read_text())
        if target.split("#", 1)[0]
    }
    missing = [module for module in found if module not in linked]
    assert missing == [], "modules of shared/polos without a link in docs/architecture.md"


def test_readme_leads_to_every_doc() -> None:
    readme = set(links((ROOT / "README.md").read_text()))
    for doc in ("docs/guide.md", "docs/http-api.md", "docs/guarantees.md", "docs/architecture.md"):
        assert doc in readme, doc


CITED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_the_guarantees_cite_exists() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    cited = CITED_TEST.findall(text)
    assert len(cited) >= 10
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not (ROOT / path).is_file()
        or not re.search(rf"^\s*(?:async\s+)?def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []

"""The dashboard's static files (``GET /ui`` and ``GET /ui/<asset>``), served by the API function itself.

The page holds no data: it asks for the API key in the browser and calls the JSON API with it, so these
routes are public (:func:`is_public` lets them past the key check, and the template and ``polos dev`` give
them no authorizer). Only the files listed in :data:`ASSETS` are served; anything else under ``/ui`` is a
``404``. The Content-Security-Policy allows nothing but this origin's script, style and API calls, so
even a value the page failed to escape could not run a script.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from polos.api.errors import NotFound

router = Router()  # type: ignore[no-untyped-call]

PREFIX = "/ui"
INDEX = "index.html"
ASSETS: dict[str, str] = {
    INDEX: "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public(method: str | None, path: str | None) -> bool:
    """Whether a request is for the dashboard's files, which need no key (they hold no data)."""
    return method == "GET" and path is not None and (path == PREFIX or path.startswith(PREFIX + "/"))


@cache
def _text(name: str) -> str:
    return (resources.files(__package__ or "polos.api") / "ui" / name).read_text(encoding="utf-8")


def _file(name: str) -> Response[str]:
    if name not in ASSETS:
        raise NotFound(f"the dashboard has no file {name!r}")
    return Response(status_code=200, content_type=ASSETS[name], body=_text(name), headers=dict(HEADERS))


@router.get(PREFIX)
def index() -> Response[str]:
    """The dashboard's page."""
    return _file(INDEX)


@router.get(PREFIX + "/<asset>")
def asset(asset: str) -> Response[str]:
    """One of the page's script and style files."""
    return _file(asset)

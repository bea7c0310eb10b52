"""Serves the history viewer: the page at ``/`` and at every ``/ui/...`` deep link, and its
assets at ``/ui/assets/<file>``.

The app is plain ES modules, CSS and SVG shipped in the package (no build step, no CDN): the
page only reads the REST API under /api/v1 from the browser, with the user's API key when the
server asks for one. These routes need no key: they serve the same files to everyone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

STATIC = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# No script or style from anywhere but this server; the API is same-origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    media_type: str
    etag: str


def _load() -> dict[str, _Asset]:
    # Read once at import: the files are part of the installed package and never change
    # while the process runs.
    assets: dict[str, _Asset] = {}
    for path in sorted(STATIC.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            assets[path.name] = _Asset(body, _TYPES[path.suffix], etag)
    return assets


_ASSETS = _load()

router = APIRouter(include_in_schema=False)


def _send(request: Request, asset: _Asset, headers: dict[str, str] | None = None) -> Response:
    # no-cache: revalidate each time (cheap with the ETag), so an upgrade is seen at once.
    common = {"ETag": asset.etag, "Cache-Control": "no-cache", **(headers or {})}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=common)
    return Response(asset.body, media_type=asset.media_type, headers=common)


def _page(request: Request) -> Response:
    return _send(
        request,
        _ASSETS["index.html"],
        {
            "Content-Security-Policy": _CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        },
    )


# GET and HEAD: uptime checkers probe with HEAD (the server sends the headers, no body).
@router.api_route("/", methods=["GET", "HEAD"])
async def home(request: Request) -> Response:
    """The viewer's start page (the state machines)."""
    return _page(request)


@router.api_route("/ui", methods=["GET", "HEAD"])
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=308)


@router.api_route("/ui/assets/{name}", methods=["GET", "HEAD"])
async def asset(request: Request, name: str) -> Response:
    """A file of the app (only the files shipped in service/viewer/static/)."""
    found = _ASSETS.get(name)
    if found is None or name == "index.html":
        return Response("Not Found", status_code=404, media_type="text/plain")
    return _send(request, found, {"X-Content-Type-Options": "nosniff"})


@router.api_route("/ui/{path:path}", methods=["GET", "HEAD"])
async def deep_link(request: Request, path: str) -> Response:
    """Every viewer URL (/ui/executions/<id>, /ui/state-machines/<name>, ...) is the same
    page; the app reads the path and the query string."""
    return _page(request)

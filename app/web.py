"""The operator's web page: `app/static/index.html` at `/`, its script, style and images under `/static`.

Plain HTML, CSS and an ES module that call the v1 API from the browser (no build step, nothing fetched from
another origin). Neither route is in the OpenAPI document. The page and its files are revalidated on every load
(`Cache-Control: no-cache` with the ETag Starlette sets), so an upgraded service never runs a stale script, and
the page forbids anything but its own origin (Content-Security-Policy).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX = STATIC_DIR / "index.html"

# Own origin only; images may also be object URLs (thumbnails fetched with the API key) and data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _RevalidatedFiles(StaticFiles):
    """StaticFiles whose answers the browser revalidates before reuse (a 304 when unchanged)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def _index() -> FileResponse:
    return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def mount_web(app: FastAPI) -> None:
    """Serve the page at `/` and `app/static/` at `/static` (neither appears in the OpenAPI schema)."""
    app.add_api_route("/", _index, methods=["GET", "HEAD"], include_in_schema=False, response_class=FileResponse)
    app.mount("/static", _RevalidatedFiles(directory=STATIC_DIR), name="static")

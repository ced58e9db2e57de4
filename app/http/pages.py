"""The service's web pages: the try-it page (``/ui``, and ``/`` redirects to it), Swagger UI (``/docs``) and
ReDoc (``/redoc``), with every script, style sheet and image they load served from ``/assets`` by this process.

Nothing here knows the model or the engine: the pages are static files that call the public API from the
browser (``GET /model``, ``POST /predict``, the OpenAPI document). The pages load nothing from another host,
so they work on an air-gapped cluster, and each answer carries a Content-Security-Policy that would block such
a load if a page ever tried. Swagger UI and ReDoc are upstream's release files, vendored under
``static/assets/vendor`` (``static/VENDOR.md`` says which versions, the one line changed in ReDoc, and how to
update them).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from string import Template

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/assets"

# Every page starts from "nothing allowed" and opens only what it uses, always from its own origin.
# No page allows inline or eval'd script: the init code of Swagger UI and ReDoc is served as files.
_BASE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
POLICIES = {
    # The preview is an object URL of the chosen file (blob:); bars are sized through the CSSOM.
    "tryit": f"{_BASE_POLICY}; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'",
    # Swagger UI writes style attributes into its markup and draws icons as data: SVGs.
    "docs": f"{_BASE_POLICY}; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'",
    # ReDoc injects its styles as <style> elements and runs its search index in a worker built from a blob:.
    "redoc": f"{_BASE_POLICY}; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; worker-src blob:",
}
ASSET_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidate every time (the ETag makes that a 304): an updated asset reaches browsers at once.
    "Cache-Control": "no-cache",
}


def install_pages(app: FastAPI) -> None:
    """Add the try-it page, ``/docs``, ``/redoc`` and their ``/assets`` to ``app``.

    ``app`` must be created with ``docs_url=None, redoc_url=None`` (FastAPI's own pages load their scripts
    from a public CDN and inline their init script) and must publish its OpenAPI document.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError(
            "create the app with FastAPI(docs_url=None, redoc_url=None): FastAPI's own /docs and /redoc load "
            "their scripts from a public CDN, and install_pages serves self-hosted ones in their place"
        )
    if app.openapi_url is None:
        raise ValueError("the docs pages need the OpenAPI document: create the app with an openapi_url")
    # Relative URLs throughout: the pages name no host, and still work if a proxy serves the app under a prefix.
    values = {"title": html.escape(app.title), "openapi_url": html.escape(app.openapi_url.lstrip("/"))}
    for path, page in {"/ui": "tryit", "/docs": "docs", "/redoc": "redoc"}.items():
        endpoint = _page_endpoint(page, values)
        app.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False, name=f"{page}_page")
    app.add_api_route("/", _to_try_it, methods=["GET"], include_in_schema=False)
    assets = _SecuredStaticFiles(directory=STATIC_DIR / "assets")
    app.mount(ASSETS_PATH, GZipMiddleware(assets, minimum_size=1024), name="assets")


def _page_endpoint(page: str, values: dict[str, str]) -> Callable[[], Awaitable[Response]]:
    """An endpoint answering ``static/pages/<page>.html``, its ``$name`` placeholders filled from ``values``."""
    template = Template((STATIC_DIR / "pages" / f"{page}.html").read_text(encoding="utf-8"))
    body = template.substitute(values)  # once, at start-up: the pages never change while the process runs
    headers = {"Content-Security-Policy": POLICIES[page], **COMMON_HEADERS}

    async def endpoint() -> Response:
        return HTMLResponse(body, headers=headers)

    return endpoint


async def _to_try_it() -> Response:
    """``/`` sends a person to the try-it page."""
    return RedirectResponse("ui", status_code=307, headers=COMMON_HEADERS)


class _SecuredStaticFiles(StaticFiles):
    """``StaticFiles`` whose answers carry the pages' security headers (``nosniff`` above all)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({"Content-Security-Policy": ASSET_POLICY, **COMMON_HEADERS})
        return response

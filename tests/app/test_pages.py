"""The pages over HTTP: their security headers, the assets they load (all served here, none elsewhere), the
vendored files against their recorded hashes, and ``SERVE_PAGES=false`` turning them off. The pages'
behaviour in a real browser is tested in tests/browser."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.http.pages import ASSETS_PATH, POLICIES, STATIC_DIR, install_pages
from tests.app.conftest import MakeClient

pytestmark = pytest.mark.anyio
PAGES = {"/ui": "tryit", "/docs": "docs", "/redoc": "redoc"}
TITLE = 'Classifier <b>"&'


class PageLinks(HTMLParser):
    """The URLs a page loads or links to, its inline scripts, and any inline handler or style attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self.inline_attributes: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self.inline_attributes += [name for name, _ in attrs if name.startswith("on") or name == "style"]
        self._in_script = tag == "script"
        if tag == "script" and not values.get("src"):
            self.inline_scripts.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data.strip()[:80])


def parse(html: str) -> PageLinks:
    links = PageLinks()
    links.feed(html)
    return links


def directives(policy: str) -> dict[str, list[str]]:
    """``"a b c; d e"`` → ``{"a": ["b", "c"], "d": ["e"]}``."""
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


@pytest.fixture
async def pages() -> AsyncIterator[httpx.AsyncClient]:
    """A bare app (no model) with only the pages installed."""
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None)
    install_pages(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
        yield client


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_each_page_carries_a_strict_policy_and_the_security_headers(pages: httpx.AsyncClient, path: str) -> None:
    response = await pages.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = directives(response.headers["content-security-policy"])
    assert response.headers["content-security-policy"] == POLICIES[PAGES[path]]
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no other host
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert all("http" not in value and "*" not in value for values in policy.values() for value in values)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"


async def test_the_try_it_page_allows_no_inline_style(pages: httpx.AsyncClient) -> None:
    policy = directives((await pages.get("/ui")).headers["content-security-policy"])
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "blob:"]


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_pages_have_no_inline_script_and_load_only_relative_urls(pages: httpx.AsyncClient, path: str) -> None:
    links = parse((await pages.get(path)).text)

    assert links.inline_scripts == []
    assert links.inline_attributes == []
    assert links.urls
    # Relative URLs: the same origin, and they still work when a proxy serves the app under a prefix.
    assert [url for url in links.urls if "//" in url or url.startswith("/")] == []


@pytest.mark.parametrize("path", sorted(PAGES))
async def test_every_asset_a_page_loads_is_served_with_the_security_headers(
    pages: httpx.AsyncClient, path: str
) -> None:
    urls = [url for url in parse((await pages.get(path)).text).urls if url.startswith("assets/")]
    assert urls

    for url in urls:
        response = await pages.get(f"/{url}")
        assert response.status_code == 200, url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        expected_type = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}[Path(url).suffix]
        assert response.headers["content-type"].startswith(expected_type), url


async def test_the_title_and_openapi_url_are_escaped_into_the_pages(pages: httpx.AsyncClient) -> None:
    for path in PAGES:
        html = (await pages.get(path)).text
        assert "Classifier &lt;b&gt;&quot;&amp; —" in html
        assert "<b>" not in html and "$" not in html
    assert 'data-openapi-url="openapi.json"' in (await pages.get("/docs")).text


async def test_root_sends_a_person_to_the_try_it_page(pages: httpx.AsyncClient) -> None:
    response = await pages.get("/")

    assert response.status_code == 307
    assert response.headers["location"] == "ui"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_large_assets_are_compressed_and_revalidated(pages: httpx.AsyncClient) -> None:
    url = f"{ASSETS_PATH}/vendor/swagger-ui/swagger-ui-bundle.js"
    first = await pages.get(url, headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    assert first.num_bytes_downloaded < len(first.content) / 2  # httpx counts the bytes on the wire

    again = await pages.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


async def test_the_pages_stay_out_of_the_openapi_document(pages: httpx.AsyncClient) -> None:
    paths = (await pages.get("/openapi.json")).json().get("paths", {})
    assert not set(paths) & {"/", "/ui", "/docs", "/redoc"}


def test_install_pages_refuses_an_app_that_keeps_fastapis_cdn_pages() -> None:
    with pytest.raises(ValueError, match=r"docs_url=None, redoc_url=None"):
        install_pages(FastAPI())
    with pytest.raises(ValueError, match="openapi_url"):
        install_pages(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))


def test_vendored_files_match_their_recorded_hashes() -> None:
    vendor = STATIC_DIR / "assets" / "vendor"
    recorded = {}
    for line in (STATIC_DIR / "vendor.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        recorded[name] = digest
    shipped = {str(path.relative_to(vendor)): path for path in vendor.rglob("*") if path.is_file()}

    assert sorted(shipped) == sorted(recorded)
    for name, path in shipped.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded[name], f"{name} differs from vendor.sha256"


async def test_pages_are_served_by_default(make_client: MakeClient) -> None:
    async with make_client() as (client, _):
        docs = await client.get("/docs")
        asset = await client.get("/assets/tryit.js")

    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == POLICIES["docs"]
    assert "cdn.jsdelivr.net" not in docs.text
    assert asset.status_code == 200


async def test_pages_off_leaves_only_the_api(make_client: MakeClient) -> None:
    async with make_client(pages=False) as (client, _):
        for path in ("/", "/ui", "/docs", "/redoc", "/assets/tryit.js"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        document = await client.get("/openapi.json")

    assert document.status_code == 200
    assert "/predict" in document.json()["paths"]

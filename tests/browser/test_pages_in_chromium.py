"""The service's pages in headless Chromium against a real server, with every host but the server out of
reach: Swagger UI lists and runs ``POST /predict``, ReDoc renders, and the try-it page classifies real photos
and shows the API's own error messages. A request outside the server, a CSP violation or a script error
fails any of them (tests/browser/conftest.py)."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.app.conftest import RunningServer
from tests.browser.conftest import LABELS

NewPage = Callable[..., Any]
TIMING_NAMES = ["Decode", "Queue", "Inference", "Other", "Total", "Round trip"]
MS = re.compile(r"\d+(\.\d)? ms")


@pytest.fixture(scope="module")
def small_pdf() -> bytes:
    """A real one-page PDF (not an image the service reads)."""
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), "white").save(buffer, format="PDF")
    return buffer.getvalue()


def upload(name: str, data: bytes, mime_type: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime_type, "buffer": data}


def shown_predictions(page: Any) -> list[str]:
    page.locator("#result").wait_for(state="visible")
    labels: list[str] = page.locator("#predictions .prediction__label").all_inner_texts()
    return labels


def api_labels(server: RunningServer, image: bytes) -> list[str]:
    """The top-5 labels the API itself answers for ``image``."""
    answer = httpx.post(f"{server.url}/predict", files={"file": ("cat.jpg", image, "image/jpeg")}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [p["label"] for p in answer.json()["predictions"]]


def test_docs_list_the_operations_and_try_it_out_predicts(
    new_page: NewPage, cat_jpeg: bytes, artifacts_dir: Path
) -> None:
    page = new_page()
    page.goto("/docs")
    block = page.locator(".opblock", has=page.locator('.opblock-summary-path[data-path="/predict"]'))
    assert block.locator(".opblock-summary-method").inner_text() == "POST"
    assert "/predict" in page.locator("#swagger-ui").inner_text()

    block.locator(".opblock-summary-control").click()
    block.get_by_role("button", name="Try it out").click()
    block.locator('input[type="file"]').set_input_files(upload("cat.jpg", cat_jpeg, "image/jpeg"))
    block.get_by_role("button", name="Execute").click()

    status = block.locator(".live-responses-table .response .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = block.locator(".live-responses-table .response .response-col_description").inner_text()
    assert '"predictions"' in body and '"timing_ms"' in body
    page.screenshot(path=artifacts_dir / "docs.png", full_page=True)


def test_redoc_renders_the_reference(new_page: NewPage, artifacts_dir: Path) -> None:
    page = new_page()
    page.goto("/redoc")
    headings = page.locator(".api-content h2")
    headings.filter(has_text=re.compile(r"^Predict\s*$")).wait_for()
    assert "Predict Batch" in headings.all_inner_texts()
    assert page.locator(".menu-content").get_by_text("Predict Batch").is_visible()
    assert "/predict/batch" in page.locator(".api-content").inner_text()
    # Search runs in a worker built from a blob: URL, which the page's CSP has to allow.
    page.get_by_role("textbox", name="Search").fill("batch")
    page.locator('[data-role="search:results"] [aria-label="Predict Batch"]').wait_for()
    page.screenshot(path=artifacts_dir / "redoc.png")


def test_try_it_page_classifies_a_photo(
    new_page: NewPage, server: RunningServer, cat_jpeg: bytes, artifacts_dir: Path
) -> None:
    page = new_page()
    page.goto("/")
    assert page.url == f"{server.url}/ui"
    model = httpx.get(f"{server.url}/model").json()
    page.locator("#model-facts").wait_for()
    assert model["version"] in page.locator("#model-facts").inner_text()

    page.locator("#file").set_input_files(upload("chelsea.jpg", cat_jpeg, "image/jpeg"))

    labels = shown_predictions(page)
    assert len(labels) == 5 and set(labels) <= set(LABELS)
    assert labels == api_labels(server, cat_jpeg)
    scores = page.locator("#predictions .prediction__score").all_inner_texts()
    assert all(score.endswith("%") for score in scores)
    assert page.locator("#timings dt").all_inner_texts() == TIMING_NAMES
    assert all(MS.fullmatch(value) for value in page.locator("#timings dd").all_inner_texts())
    assert page.locator("#preview").evaluate("img => img.naturalWidth") == 451
    assert model["version"] in page.locator("#result-meta").inner_text()
    page.screenshot(path=artifacts_dir / "try-it.png", full_page=True)


@pytest.mark.parametrize("gesture", ["drop", "paste"])
def test_try_it_page_takes_a_dropped_or_pasted_image(new_page: NewPage, cat_jpeg: bytes, gesture: str) -> None:
    page = new_page()
    page.goto("/ui")
    page.evaluate(
        """([data, gesture]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const files = new DataTransfer();
          files.items.add(new File([bytes], "cat.jpg", { type: "image/jpeg" }));
          const init = { bubbles: true, cancelable: true };
          if (gesture === "drop") {
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", { ...init, dataTransfer: files }));
          } else {
            document.dispatchEvent(new ClipboardEvent("paste", { ...init, clipboardData: files }));
          }
        }""",
        [base64.b64encode(cat_jpeg).decode(), gesture],
    )
    assert len(shown_predictions(page)) == 5
    assert page.locator("#preview").is_visible()


def test_try_it_page_shows_the_api_error_for_a_pdf(
    new_page: NewPage, server: RunningServer, small_pdf: bytes, artifacts_dir: Path
) -> None:
    expected = httpx.post(f"{server.url}/predict", files={"file": ("notes.pdf", small_pdf, "application/pdf")})
    error = expected.json()["error"]
    page = new_page()
    page.goto("/ui")

    page.locator("#file").set_input_files(upload("notes.pdf", small_pdf, "application/pdf"))

    page.locator("#error").wait_for(state="visible")
    assert page.locator("#error-message").inner_text() == error["message"]
    assert page.locator("#error-title").inner_text() == f"{expected.status_code} {error['code']}"
    assert "request id" in page.locator("#error-meta").inner_text()
    assert page.locator("#result").is_hidden()
    assert "notes.pdf" in page.locator("#no-preview").inner_text()
    page.screenshot(path=artifacts_dir / "try-it-error.png")


def test_try_it_page_asks_for_the_api_key_after_a_401(
    new_page: NewPage, make_server: Callable[..., RunningServer], cat_jpeg: bytes
) -> None:
    keyed = make_server(SERVE_API_KEY="browser-test-key")
    page = new_page(base_url=keyed.url)
    page.goto("/ui")
    assert page.locator("#key-row").is_hidden()

    page.locator("#file").set_input_files(upload("cat.jpg", cat_jpeg, "image/jpeg"))
    page.locator("#error").wait_for(state="visible")
    assert page.locator("#error-title").inner_text() == "401 unauthorized"
    assert page.locator("#api-key").is_visible()

    page.locator("#api-key").fill("browser-test-key")
    page.get_by_role("button", name="Use key").click()
    assert len(shown_predictions(page)) == 5
    assert page.locator("#error").is_hidden()


def test_try_it_page_fits_a_phone(new_page: NewPage, cat_jpeg: bytes, artifacts_dir: Path) -> None:
    page = new_page(width=390, height=844)
    page.goto("/ui")
    page.locator("#file").set_input_files(upload("cat.jpg", cat_jpeg, "image/jpeg"))
    assert len(shown_predictions(page)) == 5
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=artifacts_dir / "try-it-phone.png", full_page=True)

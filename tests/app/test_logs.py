"""Structured logs: one JSON object per line with the extra fields, or readable text."""

from __future__ import annotations

import json
import logging
import sys

from app.process.logs import JsonFormatter, TextFormatter


def make_record(exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST %s %d", ("/predict", 200), exc_info)
    record.request_id, record.status = "abc", 200
    return record


def test_json_lines_carry_the_extra_fields_and_the_traceback() -> None:
    line = JsonFormatter().format(make_record(exc=True))
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["message"] == "POST /predict 200"
    assert (payload["level"], payload["logger"], payload["request_id"], payload["status"]) == (
        "info",
        "app.access",
        "abc",
        200,
    )
    assert "ValueError: boom" in payload["traceback"] and payload["ts"].endswith("+00:00")


def test_text_lines_are_for_people() -> None:
    line = TextFormatter().format(make_record())
    assert "INFO app.access: POST /predict 200 request_id=abc status=200" in line


def test_text_lines_escape_what_a_client_could_use_to_forge_a_line() -> None:
    record = make_record()
    record.request_id = "ok\n2026-01-01 INFO app.access: forged status=200"
    line = TextFormatter().format(record)
    assert "\n" not in line and "request_id=ok\\n2026" in line

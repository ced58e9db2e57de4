"""Open-loop traffic that remembers every request: its id, when it was due, when it went out, what came back.

Built on the load generator's keep-alive connections. Each request carries its own ``X-Request-ID``,
so a run can be checked against the server's access log: nothing the server answered may be missing
on the client's side, and nothing the client lost may have been answered by the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from benchmarks.loadgen import Connection

TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass(frozen=True)
class Answer:
    """One request's fate; times are ``time.perf_counter`` seconds."""

    request_id: str
    due: float  # when the open-loop schedule started it
    sent: float  # when it was handed to a connection
    done: float
    status: int  # 0: no HTTP answer (refused, reset, closed)
    code: str  # "ok" for a 200, the error code of the JSON envelope, or the transport error's name

    @property
    def latency_ms(self) -> float:
        """From the moment it was due: a stalled server or a late generator both show here."""
        return (self.done - self.due) * 1000

    @property
    def service_ms(self) -> float:
        """From the moment it was sent."""
        return (self.done - self.sent) * 1000


def request_bytes(url: str, body: bytes, request_id: str, path: str = "/predict", headers: str = "") -> bytes:
    """A complete HTTP/1.1 request with a JPEG body and its own ``X-Request-ID``."""
    host = urlsplit(url).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n{headers}\r\n"
    )
    return head.encode() + body


async def send(conn: Connection, payload: bytes, request_id: str, due: float) -> Answer:
    """Send one request on ``conn`` and classify what comes back."""
    sent = time.perf_counter()
    try:
        status, body = await conn.request(payload)
    except TRANSPORT_ERRORS as exc:
        conn.close()
        return Answer(request_id, due, sent, time.perf_counter(), 0, type(exc).__name__)
    code = "ok" if status == 200 else _error_code(body)
    return Answer(request_id, due, sent, time.perf_counter(), status, code)


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "not_json"


async def open_loop(
    url: str, bodies: Sequence[bytes], rate: float, duration_s: float, tag: str, headers: str = ""
) -> list[Answer]:
    """Start ``rate`` requests a second for ``duration_s``, whatever the server does; every answer, in order."""
    idle: list[Connection] = []
    begin = time.perf_counter()

    async def one(index: int, due: float) -> Answer:
        request_id = f"{tag}-{index}"
        payload = request_bytes(url, bodies[index % len(bodies)], request_id, headers=headers)
        conn = idle.pop() if idle else Connection(url)
        answer = await send(conn, payload, request_id, due)
        idle.append(conn)
        return answer

    tasks = []
    for index in range(int(rate * duration_s)):
        due = begin + index / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(index, due)))
    answers = await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return list(answers)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile, or 0 for no values (a count of 0 says the rest)."""
    return float(np.percentile(values, q)) if len(values) else 0.0


def by_code(answers: Sequence[Answer]) -> dict[str, int]:
    """How many answers had each status and code, e.g. ``{"200 ok": 950, "503 overloaded": 50}``."""
    counts: dict[str, int] = {}
    for answer in answers:
        key = f"{answer.status} {answer.code}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))

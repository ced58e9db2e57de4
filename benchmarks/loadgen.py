"""A cheap HTTP load generator: asyncio over raw HTTP/1.1 keep-alive connections.

It shares the CPU with the server it measures, so it does as little as possible per request: the
request bytes are built once (the image as the raw body, or as a multipart upload as browsers and
``curl -F`` send it), responses are read by Content-Length and never JSON-decoded. Each run records
the generator's own CPU use (``generator_cores``), so a run where the generator, not the server,
set the pace shows it.

Closed loop: N clients, each sends its next request when the previous answer arrives.
Open loop: requests start at a fixed rate whatever the server does; latency counts from the
scheduled start, so a stalled server shows up in the tail instead of silently slowing the load.

    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --clients 8 --duration 20
    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --rate 15 --duration 20
    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --photos 12MP --multipart
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlsplit

import numpy as np

from benchmarks.photos import UPLOAD_CLASSES, upload_class

_BATCH_SIZE = re.compile(rb'"batch_size":(\d+)')
# uvicorn closes keep-alive connections idle for 5 s; reconnecting earlier avoids racing that close.
_MAX_IDLE_S = 2.0


@dataclass(frozen=True)
class Sample:
    started: float
    latency_s: float
    status: int
    batch_size: int


@dataclass(frozen=True)
class LoadResult:
    """Throughput and latency of one load run (latencies in milliseconds)."""

    mode: str
    clients: int | None
    rate: float | None
    duration_s: float
    requests: int
    errors: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_batch_size: float
    completed: int  # every answered request, the warm-up's included
    generator_cores: float | None = None  # the generator's CPU seconds per second of the run (None: not measured)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def build_requests(url: str, images: Sequence[bytes], path: str = "/predict", multipart: bool = False) -> list[bytes]:
    """One complete HTTP/1.1 request (headers and body) per JPEG: the raw image, or a multipart upload."""
    host = urlsplit(url).netloc
    requests = []
    for index, image in enumerate(images):
        content_type, body = "image/jpeg", image
        if multipart:
            content_type, body = multipart_upload(image, f"photo{index}.jpg")
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}"
        requests.append(f"{head}\r\n\r\n".encode() + body)
    return requests


def multipart_upload(image: bytes, filename: str, field: str = "file") -> tuple[str, bytes]:
    """The Content-Type and body of a ``multipart/form-data`` upload of one JPEG, as ``curl -F`` makes it."""
    boundary = f"------------------------{hashlib.sha1(image).hexdigest()[:24]}"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return f"multipart/form-data; boundary={boundary}", part.encode() + image + f"\r\n--{boundary}--\r\n".encode()


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0

    async def request(self, payload: bytes) -> tuple[int, bytes]:
        if time.perf_counter() - self._last_used > _MAX_IDLE_S:
            self.close()
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        length = int(re.search(rb"content-length: *(\d+)", lowered).group(1))  # type: ignore[union-attr]
        body = await self._reader.readexactly(length)
        self._last_used = time.perf_counter()
        if b"connection: close" in lowered:
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def _timed(conn: Connection, payload: bytes, started: float) -> Sample:
    try:
        status, body = await conn.request(payload)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        conn.close()
        return Sample(started, time.perf_counter() - started, 0, 0)
    match = _BATCH_SIZE.search(body)
    return Sample(started, time.perf_counter() - started, status, int(match.group(1)) if match else 0)


async def closed_loop(
    url: str, requests: Sequence[bytes], clients: int, duration_s: float, warmup_s: float
) -> LoadResult:
    """``clients`` connections, each sending back to back for ``warmup_s + duration_s``."""
    begin, cpu_began = time.perf_counter(), time.process_time()
    measure_from, stop_at = begin + warmup_s, begin + warmup_s + duration_s
    samples: list[Sample] = []
    warmup: list[Sample] = []

    async def client(index: int) -> None:
        conn, turn = Connection(url), index
        while (now := time.perf_counter()) < stop_at:
            sample = await _timed(conn, requests[turn % len(requests)], now)
            turn += clients
            (samples if sample.started >= measure_from else warmup).append(sample)
        conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    result = summarize("closed", samples, measure_from, clients=clients, unmeasured=len(warmup))
    return replace(result, generator_cores=_cores_since(begin, cpu_began))


async def open_loop(url: str, requests: Sequence[bytes], rate: float, duration_s: float, warmup_s: float) -> LoadResult:
    """Start a request every ``1 / rate`` seconds, each on an idle connection (or a new one)."""
    begin, cpu_began = time.perf_counter(), time.process_time()
    measure_from = begin + warmup_s
    idle: list[Connection] = []
    samples: list[Sample] = []
    warmup: list[Sample] = []

    async def one(index: int, scheduled: float) -> None:
        conn = idle.pop() if idle else Connection(url)
        sample = await _timed(conn, requests[index % len(requests)], scheduled)
        idle.append(conn)
        (samples if scheduled >= measure_from else warmup).append(sample)

    tasks = []
    for index in range(int(rate * (warmup_s + duration_s))):
        scheduled = begin + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    result = summarize("open", samples, measure_from, rate=rate, unmeasured=len(warmup))
    return replace(result, generator_cores=_cores_since(begin, cpu_began))


def _cores_since(began: float, cpu_began: float) -> float:
    """This process's CPU seconds per wall second since ``began`` (the generator's own cost)."""
    return (time.process_time() - cpu_began) / max(time.perf_counter() - began, 1e-9)


def summarize(
    mode: str,
    samples: list[Sample],
    measure_from: float,
    clients: int | None = None,
    rate: float | None = None,
    unmeasured: int = 0,
) -> LoadResult:
    """Throughput over the measured window and latency percentiles of the successful requests."""
    ok = [s for s in samples if s.status == 200]
    end = max((s.started + s.latency_s for s in samples), default=measure_from)
    window = max(end - measure_from, 1e-9)
    latencies = np.array([s.latency_s for s in ok]) * 1000 if ok else np.zeros(1)
    p50, p95, p99 = (float(np.percentile(latencies, q)) for q in (50, 95, 99))
    return LoadResult(
        mode=mode,
        clients=clients,
        rate=rate,
        duration_s=round(window, 3),
        requests=len(samples),
        errors=len(samples) - len(ok),
        throughput=len(ok) / window,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_batch_size=float(np.mean([s.batch_size for s in ok])) if ok else 0.0,
        completed=len(samples) + unmeasured,
    )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="closed-loop clients (default: %(default)s)")
    parser.add_argument("--rate", type=float, help="open-loop requests per second (instead of --clients)")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds first (default: %(default)s)")
    parser.add_argument(
        "--photos", choices=list(UPLOAD_CLASSES), default="0.2MP", help="upload class (default: %(default)s)"
    )
    parser.add_argument("--multipart", action="store_true", help="multipart/form-data uploads (default: raw body)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    requests = build_requests(args.url, upload_class(args.photos), multipart=args.multipart)
    if args.rate:
        result = asyncio.run(open_loop(args.url, requests, args.rate, args.duration, args.warmup))
    else:
        result = asyncio.run(closed_loop(args.url, requests, args.clients, args.duration, args.warmup))
    print(json.dumps(result.to_dict(), indent=2))


if __name__ == "__main__":
    main()

"""HTTP/1.1 by hand, for requests no well-behaved client would send: any bytes, any headers, chunked
bodies with no Content-Length, multipart bodies of any shape.

One request per connection, blocking, with a hard time limit, so a server that hangs shows up as a
timeout of the case rather than as a stuck suite.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawRequest:
    """What goes on the wire; with ``chunked`` the body goes out in ``chunks`` and no Content-Length."""

    method: str = "POST"
    target: str = "/predict"
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    chunked: bool = False
    chunks: Sequence[bytes] = field(default=())

    def head(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}", "Connection: close"]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        elif self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def pieces(self, host: str) -> Iterable[bytes]:
        """The request as the successive writes that send it."""
        if not self.chunked:
            yield self.head(host) + self.body
            return
        yield self.head(host)
        for chunk in self.chunks or [self.body]:
            if chunk:
                yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        yield b"0\r\n\r\n"


@dataclass(frozen=True)
class RawResponse:
    status: int  # 0: the connection closed without a status line
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    bytes_sent: int  # of the request, before the answer came or the server closed the connection
    trailing: bytes = b""  # anything after the first answer: a second answer means a smuggled request


class Hang(Exception):
    """No complete answer within the time limit."""


def exchange(url: str, request: RawRequest, timeout_s: float = 20.0) -> RawResponse:
    """Send ``request`` on a fresh connection and read the whole answer (the server closes after it)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    started = time.monotonic()
    deadline = started + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sent = _send(sock, request.pieces(parts.netloc), deadline)
        raw = _read_all(sock, deadline)
    status, headers, body, trailing = parse_response(raw)
    return RawResponse(status, headers, body, time.monotonic() - started, sent, trailing)


def _send(sock: socket.socket, pieces: Iterable[bytes], deadline: float) -> int:
    """Write the pieces until done, the server answers early, or it stops reading."""
    sent = 0
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:  # an early answer (413, 401, ...): the rest of the body is not wanted
            break
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        except TimeoutError:
            raise Hang(f"the server stopped reading after {sent} bytes") from None
        sent += len(piece)
    return sent


def _read_all(sock: socket.socket, deadline: float) -> bytes:
    data = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Hang(f"no complete answer in time ({len(data)} bytes received)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise Hang(f"no complete answer in time ({len(data)} bytes received)") from None
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes, bytes]:
    """Status, lower-cased headers and body of the first answer (Content-Length framed, or up to the
    close), and whatever bytes follow it."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return 0, {}, raw, b""
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    trailing = b""
    if "content-length" in headers:
        length = int(headers["content-length"])
        body, trailing = body[:length], body[length:]
    return int(status_line.split()[1]), headers, body, trailing


def multipart(parts: Sequence[tuple[str, str | None, str | None, bytes]], boundary: str = "reliability") -> RawRequest:
    """A multipart/form-data body from (field name, file name, content type, data) parts."""
    body = bytearray()
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return RawRequest(headers=[("Content-Type", f"multipart/form-data; boundary={boundary}")], body=bytes(body))

"""Access: the API key over real HTTP, the container's user, and dependency floors against known fixes.

The fix versions below were checked against the public advisories (GitHub Security Advisories, NVD)
when this file was written; ``pip-audit`` needs PyPI's JSON API or OSV, which this build machine
cannot reach. Each floor in pyproject.toml must be at or above every fix listed for its package.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.reliability.support.rawhttp import RawRequest, exchange

# package -> (first fixed version, advisory, what it is)
KNOWN_FIXES: dict[str, list[tuple[str, str, str]]] = {
    "torch": [
        ("2.6.0", "CVE-2025-32434", "torch.load(weights_only=True) remote code execution"),
        ("2.10.0", "CVE-2026-24747", "weights_only unpickler memory corruption"),
    ],
    "pillow": [
        ("11.3.0", "CVE-2025-48379", "DDS encoder heap buffer overflow"),
        ("12.1.1", "CVE-2026-25990", "out-of-bounds write on crafted images"),
        ("13.0.0", "GHSA-8g5g-8vmr-9782", "JPEG decoder heap buffer overflow (with GHSA-5x8w-8jj5-q52h)"),
        ("13.0.0", "CVE-2026-96639", "multi-frame loaders reuse stale image storage"),
        ("13.0.0", "GHSA-462x-pgg6-55fp", "TIFF tile decoding out-of-bounds read"),
    ],
    "python-multipart": [
        ("0.0.18", "CVE-2024-53981", "DoS through bytes around the boundaries"),
        ("0.0.27", "CVE-2026-42561", "DoS through unbounded part headers"),
        ("0.0.30", "CVE-2026-53539", "quadratic query-string parsing"),
    ],
    "starlette": [
        ("0.47.2", "CVE-2025-54121", "event loop blocked while rolling large uploads to disk"),
        ("0.49.1", "CVE-2025-62727", "quadratic Range header parsing in FileResponse"),
        ("1.0.1", "CVE-2026-48710", "Host header moves request.url.path away from the routed path"),
        ("1.3.1", "CVE-2026-54283", "request.form() limits ignored for url-encoded bodies"),
    ],
    "h11": [("0.16.0", "CVE-2025-43859", "request smuggling through chunked-encoding leniency")],
    "uvicorn": [("0.11.7", "CVE-2020-7694", "log and header injection")],
    "fastapi": [("0.109.1", "CVE-2024-24762", "Content-Type ReDoS (through python-multipart)")],
    "pydantic": [("2.4.0", "CVE-2024-3772", "e-mail validation ReDoS")],
    "onnx": [
        ("1.16.0", "CVE-2024-27318", "path traversal through external data"),
        ("1.21.0", "CVE-2026-27489", "path traversal through external data (incomplete earlier fixes)"),
        ("1.21.0", "CVE-2026-34447", "symlink traversal through external data"),
    ],
    "tqdm": [("4.66.3", "CVE-2024-34062", "code injection through CLI arguments")],
}


@dataclass(frozen=True)
class FloorCheck:
    package: str
    floor: str | None
    fixes: list[tuple[str, str, str]]

    @property
    def below(self) -> list[str]:
        """The advisories whose fix the floor does not reach."""
        floor = Version(self.floor) if self.floor else None
        return [advisory for fixed, advisory, _ in self.fixes if floor is None or floor < Version(fixed)]


def dependency_floors(pyproject: Path) -> dict[str, str | None]:
    """Each dependency's ``>=`` floor (None when it has none)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    floors = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        minimum = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==", "~=")]
        floors[requirement.name.lower()] = minimum[0] if minimum else None
    return floors


def check_floors(pyproject: Path) -> list[FloorCheck]:
    floors = dependency_floors(pyproject)
    return [FloorCheck(name, floors.get(name), fixes) for name, fixes in KNOWN_FIXES.items() if name in floors]


def final_stage_user(dockerfile: Path) -> str | None:
    """The user of the last ``USER`` instruction in the Dockerfile's final stage (None: root by default)."""
    user = None
    for raw in dockerfile.read_text().splitlines():
        words = raw.strip().split()
        if not words:
            continue
        if words[0].upper() == "FROM":
            user = None
        elif words[0].upper() == "USER" and len(words) > 1:
            user = words[1]
    return user


def is_root(user: str | None) -> bool:
    return user is None or user.split(":")[0] in ("0", "root")


def compose_users(compose: Path) -> list[str]:
    """Every ``user:`` a compose file sets (an override of the image's user)."""
    return re.findall(r"^\s+user:\s*[\"']?([^\"'\s#]+)", compose.read_text(), flags=re.MULTILINE)


@dataclass(frozen=True)
class AuthCase:
    name: str
    method: str
    target: str
    headers: list[tuple[str, str]]
    expect: int


def auth_cases(key: str, body_headers: Sequence[tuple[str, str]]) -> list[AuthCase]:
    """Every way to get the key wrong on the predict endpoints, the right ways, and the open endpoints."""
    wrong = {
        "no Authorization": [],
        "empty Authorization": [("Authorization", "")],
        "Bearer without a key": [("Authorization", "Bearer")],
        "Basic scheme": [("Authorization", f"Basic {key}")],
        "key without a scheme": [("Authorization", key)],
        "a prefix of the key": [("Authorization", f"Bearer {key[:-1]}")],
        "the key and more": [("Authorization", f"Bearer {key}x")],
        "another key": [("Authorization", "Bearer " + "k" * len(key))],
        "the key in another header": [("X-API-Key", key)],
        "the key in the query string": [],
    }
    cases = []
    for name, headers in wrong.items():
        for path in ("/predict", "/predict/batch"):
            target = path + (f"?api_key={key}" if "query" in name else "")
            cases.append(AuthCase(f"{name} ({path})", "POST", target, [*body_headers, *headers], 401))
    for spelling in (f"Bearer {key}", f"bearer {key}", f"BEARER  {key} "):
        headers = [*body_headers, ("Authorization", spelling)]
        cases.append(AuthCase(f"the key as {spelling!r}", "POST", "/predict", headers, 200))
    for path in ("/health/live", "/health/ready", "/metrics", "/model", "/openapi.json", "/docs"):
        cases.append(AuthCase(f"open: GET {path}", "GET", path, [], 200))
    return cases


def run_auth_cases(url: str, cases: Sequence[AuthCase], body: bytes) -> list[tuple[AuthCase, int]]:
    """Each case over a fresh connection, with its status."""
    results = []
    for case in cases:
        request = RawRequest(case.method, case.target, case.headers, body if case.method == "POST" else b"")
        results.append((case, exchange(url, request).status))
    return results

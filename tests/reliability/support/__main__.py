"""The reliability suite: bad input and fuzzing, the doors beside /predict (admin reload, the Open Inference
Protocol), overload, disconnects, graceful shutdown, soak, faults, training faults and access, each against real
servers on loopback.

    python -m tests.reliability.support --full   # ~16 min on 2 cores; writes docs/reliability.md's figures
    python -m tests.reliability.support          # the CI-sized run (a few minutes); prints, leaves the docs alone
    python -m tests.reliability.support --only overload soak

Every run also writes its raw results to .bench/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.support import report, suite

REPO = Path(__file__).resolve().parents[3]
SECTIONS = ("bad_input", "doors", "overload", "disconnects", "shutdown", "soak", "faults", "training", "static")


def run(profile: suite.Profile, work: suite.Workspace, only: set[str]) -> dict[str, Any]:
    """Each chosen section in turn; capacity from the overload section sizes shutdown and soak."""
    results: dict[str, Any] = {}
    capacity: float | None = None

    def timed(name: str, section: Any, *args: Any) -> Any:
        began = time.monotonic()
        print(f"[{name}] running", flush=True)
        value = suite.as_plain(section(*args))
        print(f"[{name}] done in {time.monotonic() - began:.0f} s", flush=True)
        results[name] = value
        return value

    if "bad_input" in only:  # the API-key cases run on the same server
        timed("bad_input", suite.section_bad_input_and_access, profile, work)
    if only & {"overload", "shutdown", "soak"}:
        capacity = timed("overload", suite.section_overload, profile, work)["capacity_rps"]
    independent = {
        "doors": suite.section_doors,
        "disconnects": suite.section_disconnects,
        "faults": suite.section_faults,
        "training": suite.section_training,
    }
    for name, section in independent.items():
        if name in only:
            timed(name, section, profile, work)
    for name, section in (("shutdown", suite.section_shutdown), ("soak", suite.section_soak)):
        if name in only and capacity is not None:
            timed(name, section, profile, work, capacity)
    if "static" in only:
        timed("static", suite.section_static)
    return results


def header(command: str, load_before: tuple[float, ...], elapsed_s: float) -> str:
    cores = len(os.sched_getaffinity(0))
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d} with `{command}` in {elapsed_s / 60:.0f} min on "
        f"{cores} shared CPU cores ({platform.processor() or platform.machine()}, Python {platform.python_version()}); "
        f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}. Servers are `python -m app` with "
        "its defaults (ONNX Runtime, batches of up to 8, queue of 64, 30 s deadline) on a 3-class ResNet-50 "
        "with the standard 224-pixel preprocessing."
    )


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full size, and write docs/reliability.md's figures")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "reliability.json", help="default: %(default)s")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "reliability.md", help="default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every server this run started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    command = " ".join(["python -m tests.reliability.support", *(argv if argv is not None else sys.argv[1:])])
    load_before, began = os.getloadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        profile = suite.FULL if args.full else suite.QUICK
        results = run(profile, suite.Workspace(Path(tmp)), set(args.only or SECTIONS))
    results["header"] = header(command, load_before, time.monotonic() - began)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    block = report.render(results)
    print(block)
    if args.full and not args.only:
        report.write_into(args.doc, block)
        print(f"wrote the figures into {args.doc}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

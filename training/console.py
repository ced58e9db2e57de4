"""Plain log lines for people, with no project imports so any training module can use it."""

from __future__ import annotations


def log(message: str, enabled: bool = True) -> None:
    """One plain line on stdout (flushed, so it shows up promptly in log files)."""
    if enabled:
        print(message, flush=True)

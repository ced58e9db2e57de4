"""Watching the checkpoint file: a reload when a new file is renamed onto its path, never on a half-written one.

A new file put in place by a rename (what ``model.atomic_write``, the trainer and ``mv`` do) has a new inode;
a file being written in place keeps its inode and is ignored, so a reader never sees half a file. Polling,
not inotify: it works the same on bind mounts, Docker volumes, NFS and Kubernetes volumes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

POLL_S = 1.0
Identity = tuple[int, int] | None  # (device, inode) of the file, None when it is missing


def file_identity(path: Path) -> Identity:
    """Which file ``path`` names now (symbolic links followed), or None when there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


async def watch_file(
    path: Path, seen: Identity, on_change: Callable[[], Awaitable[bool]], poll_s: float = POLL_S
) -> None:
    """Call ``on_change`` each time another file appears at ``path``; until cancelled. ``on_change`` returns
    False when it could not act now, and is then called again at the next poll."""
    while True:
        await asyncio.sleep(poll_s)
        current = file_identity(path)
        if current is not None and current != seen and await on_change():
            seen = current

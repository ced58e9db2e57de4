"""Blocking work awaited from the event loop on a thread that can never hold up the process's exit.

``asyncio.to_thread`` runs on the loop's executor, whose threads the interpreter joins at exit: a load that
never returns (a file on a hung network mount) would keep a drained server from ever exiting. Loads run
on a daemon thread instead; awaiting one can be cancelled, and the thread's late result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def on_daemon_thread(name: str, work: Callable[[], T]) -> T:
    """``work()`` on a new daemon thread named ``name``; its result, or its exception raised here."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], object]) -> None:
        if not future.done():  # else the awaiting task was cancelled meanwhile
            outcome()

    def run() -> None:
        outcome: Callable[[], object]
        try:
            outcome = functools.partial(future.set_result, work())
        except BaseException as exc:  # handed to the awaiting task, which decides
            outcome = functools.partial(future.set_exception, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future

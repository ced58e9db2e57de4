"""Loads awaited on a daemon thread: results and errors come back, and a load that never returns can neither
hold the awaiting task nor keep the process from exiting."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from app.engine.threads import on_daemon_thread


@pytest.mark.anyio
async def test_the_result_or_the_error_comes_back() -> None:
    assert await on_daemon_thread("t", lambda: 41 + 1) == 42

    def fail() -> None:
        raise ValueError("bad file")

    with pytest.raises(ValueError, match="bad file"):
        await on_daemon_thread("t", fail)


@pytest.mark.anyio
async def test_waiting_can_be_cancelled_while_the_work_still_blocks() -> None:
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await on_daemon_thread("stuck", release.wait)
        (stuck,) = [t for t in threading.enumerate() if t.name == "stuck"]
        assert stuck.daemon
    finally:
        release.set()


def test_a_load_that_never_returns_does_not_keep_the_process_alive() -> None:
    script = textwrap.dedent(
        """
        import asyncio, threading
        from app.engine.threads import on_daemon_thread
        async def main():
            try:
                await asyncio.wait_for(on_daemon_thread("stuck", threading.Event().wait), 0.2)
            except TimeoutError:
                print("gave up", flush=True)
        asyncio.run(main())
        """
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "gave up", done.stderr
    assert time.monotonic() - began < 30  # asyncio.to_thread's worker would have been joined forever

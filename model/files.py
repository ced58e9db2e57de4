"""Files handed between processes: written atomically, read only when they are what they claim to be.

Atomic writes, defined once: a reader, a crash or a preemption never sees half a file.

Everything this project hands to another process (checkpoints, the resume state, the reports, the
ONNX cache) is written the same way: a temporary file in the target's folder, written, synced to
disk, made readable by other users, then renamed over the target. A rename within one folder is
atomic, so the target is always either the old file or the new one. The temporary files are named
``.<name>.<random>.tmp``; ``leftover_temp_files`` finds those a killed process never finished.

Reads of such files (``read_regular_file``) check what they open before reading a byte: a FIFO would
block the reader forever and a device such as ``/dev/zero`` never ends, so only a regular file of a
bounded size is read.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

# mkstemp creates 0600: weights and caches are often read by a server running as another user.
FILE_MODE = 0o644


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Replace ``path`` with what ``write`` writes to the temporary path (a ``str``) it is given.

    The writer may open the path itself (``torch.onnx.export``, ``safetensors``, ``savefig``); the
    temporary file already exists, empty. If the writer raises, the temporary file is removed and
    ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(target.parent)


class UnreadableFile(OSError):
    """A file that is not read: not a regular file, or over the size limit; the message says which."""


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``; else ``UnreadableFile``.

    Opened without blocking (a FIFO's open would wait for a writer) and checked with ``fstat`` on the open
    descriptor, so what is checked is what is read. ``OSError`` as ``open`` raises it for a missing or
    unreadable file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"is not a regular file ({_kind(info.st_mode)})")
        if info.st_size > max_bytes:
            raise UnreadableFile(f"is {info.st_size} bytes, over the limit of {max_bytes}")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(max_bytes + 1)  # a file that grew since fstat is still read only this far
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UnreadableFile(f"grew past the limit of {max_bytes} bytes while being read")
    return data


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device"}
    kinds |= {stat.S_ISBLK: "a block device", stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "not a plain file")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def keep_copy(path: str | os.PathLike[str], copy: str | os.PathLike[str]) -> bool:
    """Make ``copy`` hold what ``path`` holds now, atomically; False when there is no ``path``.

    A hard link costs nothing and leaves ``path`` untouched; on a filesystem without hard links the
    bytes are copied instead. Either way ``copy`` is replaced in one rename, never half-written.
    """
    source, target = Path(path), Path(copy)
    if not source.is_file():
        return False
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        atomic_write(target, lambda name: shutil.copyfile(source, name))
        return True
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return True


def leftover_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of writes to ``path`` that never finished (a killed process leaves them)."""
    target = Path(path)
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def _fsync_file(path: str) -> None:
    # Without it a power cut after the rename can leave the new name pointing at empty blocks.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; some filesystems cannot sync a directory, which is fine to skip."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

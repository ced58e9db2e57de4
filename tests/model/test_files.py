"""One atomic write for every file the project hands on: readable by others, synced, never half there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from model import files
from model.files import (
    UnreadableFile,
    atomic_write,
    keep_copy,
    leftover_temp_files,
    read_regular_file,
    write_text_atomic,
)


def test_the_file_is_replaced_whole_and_readable_by_other_users(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "report.md"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["report.md"]


def test_a_writer_that_takes_a_path_string(tmp_path: Path) -> None:
    seen: list[object] = []

    def export(name: str) -> None:  # like torch.onnx.export: opens the path itself
        seen.append(name)
        with open(name, "wb") as f:
            f.write(b"graph")

    atomic_write(tmp_path / "model.onnx", export)
    assert (tmp_path / "model.onnx").read_bytes() == b"graph"
    assert isinstance(seen[0], str) and Path(seen[0]).parent == tmp_path
    assert Path(seen[0]).name.startswith(".model.onnx.")


def test_the_temp_file_and_the_folder_are_synced_before_and_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((name, (tmp_path / "w.bin").exists()))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", spying_fsync)
    atomic_write(tmp_path / "w.bin", lambda name: Path(name).write_bytes(b"x" * 10))
    (temp_name, target_there), (folder, renamed) = synced
    assert Path(temp_name).name.startswith(".w.bin.") and not target_there  # the data, before the rename
    assert Path(folder) == tmp_path and renamed  # the rename itself
    assert (tmp_path / "w.bin").read_bytes() == b"x" * 10


def test_a_failing_writer_leaves_the_previous_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_text_atomic(path, "the old model")

    def half_then_fail(name: str) -> None:
        Path(name).write_text("half a mod")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "the old model"
    assert os.listdir(tmp_path) == ["model.safetensors"]
    assert leftover_temp_files(path) == []


def test_leftover_temp_files_are_the_unfinished_writes_of_that_file_only(tmp_path: Path) -> None:
    for name in (".last.ckpt.abc123.tmp", ".model.safetensors.x1.tmp", "last.ckpt", ".last.ckpt.notes"):
        (tmp_path / name).write_bytes(b"")
    assert leftover_temp_files(tmp_path / "last.ckpt") == [tmp_path / ".last.ckpt.abc123.tmp"]


@pytest.mark.parametrize("link_works", [True, False])
def test_keep_copy_keeps_the_old_file_under_the_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link_works: bool
) -> None:
    if not link_works:  # a filesystem without hard links: the bytes are copied instead
        monkeypatch.setattr(files.os, "link", _refuse_link)
    current, previous = tmp_path / "model.safetensors", tmp_path / "model.prev.safetensors"
    assert keep_copy(current, previous) is False and not previous.exists()
    write_text_atomic(current, "v1")
    write_text_atomic(previous, "v0")
    assert keep_copy(current, previous) is True
    write_text_atomic(current, "v2")  # renamed over the name: the kept copy is not touched
    assert (current.read_text(), previous.read_text()) == ("v2", "v1")
    assert stat.S_IMODE(previous.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["model.prev.safetensors", "model.safetensors"]


def _refuse_link(src: object, dst: object, *args: object, **kwargs: object) -> None:
    raise OSError(1, "Operation not permitted")


def test_keep_copy_after_a_crash_mid_way_leaves_both_names_whole(tmp_path: Path) -> None:
    current, previous = tmp_path / "model.safetensors", tmp_path / "model.prev.safetensors"
    write_text_atomic(current, "v1")
    keep_copy(current, previous)  # a crash here, before the new model is written: both hold v1
    assert current.read_text() == previous.read_text() == "v1"


def test_the_umask_does_not_decide_the_mode(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "f", lambda name: Path(name).write_bytes(b"bytes"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_only_a_regular_file_within_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, max_bytes=100) == b"x" * 100
    with pytest.raises(UnreadableFile, match="is 100 bytes, over the limit of 99"):
        read_regular_file(path, max_bytes=99)
    with pytest.raises(UnreadableFile, match="a directory"):
        read_regular_file(tmp_path, max_bytes=100)
    with pytest.raises(UnreadableFile, match="a character device"):
        read_regular_file("/dev/zero", max_bytes=1 << 30)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", max_bytes=100)


def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile, match="a FIFO"):
        read_regular_file(fifo, max_bytes=1 << 30)  # a blocking open would wait here forever
    with pytest.raises(OSError):  # and nobody holds it open for reading afterwards
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

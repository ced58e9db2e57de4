"""What a reload asked for over the network may name: a file inside the model directory, links followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.engine.client import ModelState, ReloadOutcome
from app.engine.reload import resolve_requested
from app.errors import InvalidModel


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    (models / "runs").mkdir(parents=True)
    for name in ("model.safetensors", "runs/best.safetensors"):
        (models / name).write_bytes(b"x")
    (tmp_path / "secret.safetensors").write_bytes(b"x")
    (models / "inside-link.safetensors").symlink_to(models / "model.safetensors")
    (models / "outside-link.safetensors").symlink_to(tmp_path / "secret.safetensors")
    return models


@pytest.mark.parametrize(
    "requested",
    ["model.safetensors", "runs/best.safetensors", "./runs/../model.safetensors", "inside-link.safetensors"],
)
def test_names_and_paths_inside_the_folder_resolve_there(folder: Path, requested: str) -> None:
    resolved = resolve_requested(requested, folder)
    assert resolved.is_relative_to(folder.resolve()) and resolved.is_file()
    assert resolve_requested(str(folder / requested), folder) == resolved  # absolute, the same


@pytest.mark.parametrize(
    "requested",
    ["../secret.safetensors", "outside-link.safetensors", "/etc/shadow", "/nonexistent/x", ".", "", "a\0b"],
)
def test_anything_else_is_refused_with_one_message_that_reveals_nothing(folder: Path, requested: str) -> None:
    with pytest.raises(InvalidModel) as refused:
        resolve_requested(requested, folder)
    assert refused.value.message == (
        "the path must name a checkpoint file inside the model directory (SERVE_MODEL_DIR)"
    )


def test_a_model_directory_that_is_itself_a_link_is_followed(folder: Path, tmp_path: Path) -> None:
    link = tmp_path / "current"
    os.symlink(folder, link)  # as Kubernetes mounts ConfigMaps and secrets: ..data -> a timestamped folder
    assert resolve_requested("model.safetensors", link) == (folder / "model.safetensors").resolve()


def test_the_public_outcome_names_the_file_not_where_it_lives() -> None:
    state = ModelState("resnet50", "abc", "2026-01-01T00:00:00+00:00")
    outcome = ReloadOutcome(
        "failed",
        "/srv/models/v2.safetensors",
        "t",
        1.0,
        state,
        state,
        "/srv/models/v2.safetensors: corrupt or truncated",
    )
    shown = outcome.public()
    assert shown["file"] == "v2.safetensors" and "path" not in shown
    assert shown["error"] == "v2.safetensors: corrupt or truncated"
    assert outcome.to_dict()["path"] == "/srv/models/v2.safetensors"  # the admin's answer keeps it

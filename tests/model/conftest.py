"""Fixtures for the decoding tests: phone-sized JPEGs and a model trained by the project's trainer."""

from __future__ import annotations

import pytest

from benchmarks.decode_accuracy import Case, jpeg_cases
from model import CHECKPOINT_FILENAME, Checkpoint, load_checkpoint
from tests.training.conftest import make_image_folder, run_training

# The run docs/benchmarks.md's probability figures come from: 32-pixel training crops on the
# generated shapes, validated (and so exported) at the served resize 232 / crop 224.
SERVED_SIZE_RUN = ("--epochs", "3", "--workers", "0", "--seed", "7", "--val-resize", "232", "--val-crop", "224")


@pytest.fixture(scope="session")
def phone_jpegs() -> list[Case]:
    """scikit-image's photos as 2, 12 and 24 MP phone JPEGs (made once: a 24 MP encode takes a while)."""
    return list(jpeg_cases())


@pytest.fixture(scope="session")
def served_size_model(tmp_path_factory: pytest.TempPathFactory) -> Checkpoint:
    """A tiny run of ``training.train`` whose checkpoint carries the served preprocessing (232 / 224)."""
    data = make_image_folder(tmp_path_factory.mktemp("shapes"))
    out = tmp_path_factory.mktemp("run")
    run_training(data, out, *SERVED_SIZE_RUN)
    return load_checkpoint(out / CHECKPOINT_FILENAME)

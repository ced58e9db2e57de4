"""Run by the DDP test under torchrun: trains with ``training.train.main`` and writes this rank's
weight digest next to the outputs, so the test can compare what every rank ends up holding."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from torch import nn

from training.train import main


def digest(net: nn.Module) -> str:
    """SHA-256 over every parameter and buffer, by name."""
    sha = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=tensor.dtype).numpy().tobytes())
    return sha.hexdigest()


if __name__ == "__main__":
    digest_dir = Path(sys.argv[1])
    result = main(sys.argv[2:])
    (digest_dir / f"rank{os.environ['RANK']}.sha256").write_text(digest(result.net))

"""The committed gRPC modules are what the .proto and the pinned grpcio-tools give, and they coexist with
other definitions of the protocol in one process."""

from __future__ import annotations

import subprocess
import sys

from app.v2.proto.generate import stale_files
from tests.app.conftest import REPO


def test_generated_modules_are_up_to_date() -> None:
    assert stale_files() == [], "run: python -m app.v2.proto.generate"


def test_the_protocol_modules_load_beside_tritonclients_in_either_order() -> None:
    # The default descriptor pool refuses a second `inference.ModelInferRequest`; ours uses a private one.
    ours, theirs = "import app.v2.grpc_server", "import tritonclient.grpc"
    for first, second in ((ours, theirs), (theirs, ours)):
        result = subprocess.run(
            [sys.executable, "-c", f"{first}; {second}"], cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr

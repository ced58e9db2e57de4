"""Generates the Python modules of ``grpc_predict_v2.proto``; they are committed beside it.

    pip install grpcio-tools==1.73.1
    python -m app.v2.proto.generate            # rewrite the modules
    python -m app.v2.proto.generate --check    # exit 1 if they differ from what the .proto gives

The pin fixes the versions the generated code asks of its runtime: its protobuf gencode 6.31.0 runs on
protobuf 6.31 or later (7.x included, and inside the range ``tritonclient[grpc]`` accepts), its service
module on grpcio 1.73.1 or later.

One change is made after protoc: the messages go into a private descriptor pool, not protobuf's default
one. The default pool refuses a second definition of ``inference.ModelInferRequest``, and tritonclient,
KServe's SDK and MLServer each define it; without the change the server could not share a process with
any of them (a test process driving it with tritonclient, an application embedding both).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tempfile
from pathlib import Path

GRPC_TOOLS_VERSION = "1.73.1"
PROTO = Path(__file__).with_name("grpc_predict_v2.proto")
ROOT = Path(__file__).resolve().parents[3]
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate(out_root: Path) -> list[Path]:
    """Run protoc on the .proto with ``out_root`` as the repository root; return the generated files."""
    installed = importlib.metadata.version("grpcio-tools")
    if installed != GRPC_TOOLS_VERSION:
        raise RuntimeError(
            f"grpcio-tools {installed} is installed; run `pip install grpcio-tools=={GRPC_TOOLS_VERSION}`"
        )
    from grpc_tools import protoc  # a development tool: imported only to generate

    source = PROTO.relative_to(ROOT)
    outputs = (f"--python_out={out_root}", f"--pyi_out={out_root}", f"--grpc_python_out={out_root}")
    if protoc.main(["protoc", f"-I{ROOT}", *outputs, str(source)]) != 0:
        raise RuntimeError(f"protoc failed on {source}")
    out_dir = out_root / source.parent
    messages = out_dir / GENERATED[0]
    text = messages.read_text()
    if text.count(_DEFAULT_POOL) != 1:
        raise RuntimeError(f"{messages.name} no longer adds its file to the default pool in one call: check the pool")
    messages.write_text(text.replace(_DEFAULT_POOL, _PRIVATE_POOL))
    return [out_dir / name for name in GENERATED]


def stale_files() -> list[str]:
    """The committed generated files that differ from a fresh generation (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [path.name for path in fresh if path.read_bytes() != (PROTO.parent / path.name).read_bytes()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare with the committed files")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            sys.stderr.write(f"out of date: {', '.join(stale)}; run python -m app.v2.proto.generate\n")
        return 1 if stale else 0
    generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Download torchvision's published ImageNet ResNet-50 weights and convert them.

    python -m model.fetch --out weights/model.safetensors [--variant v1|v2]

The download is checked against the SHA-256 prefix torchvision puts in the file name.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from urllib.error import URLError

from torch.hub import download_url_to_file

from model.convert import VARIANTS, convert_torchvision


def hash_prefix(url: str) -> str:
    """torchvision names its files ``<arch>-<sha256 prefix>.pth``."""
    return Path(url).stem.rsplit("-", 1)[-1]


def fetch(out: str | Path, variant: str = "v2") -> str:
    """Download, verify and convert; returns the checkpoint's version."""
    url = VARIANTS[variant].url
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / Path(url).name
        try:
            download_url_to_file(url, str(pth), hash_prefix=hash_prefix(url), progress=sys.stderr.isatty())
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(
                f"cannot download {url} ({reason}); offline? fetch that file elsewhere and run "
                f"`python -m model.convert --from-torchvision {Path(url).name} --out {out}`"
            ) from None
        except RuntimeError as exc:  # torch.hub's hash mismatch
            raise ValueError(f"downloaded weights failed the hash check: {exc}") from None
        return convert_torchvision(pth, out, variant)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="v2", help="weights variant (default: v2)")
    args = parser.parse_args(argv)
    try:
        version = fetch(args.out, args.variant)
    except (ConnectionError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (version {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

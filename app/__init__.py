"""The inference service: ``python -m app`` serves a checkpoint over HTTP (docs/api.md)."""

import os

# PyTorch's OpenMP threads spin between parallel regions by default. Beside the decode threads on
# a small CPU host that spinning takes the cores the decoders need and stalls the next forward
# pass; passive waiting served about a third more requests per second with the torch backend in
# our CPU benchmark. It only takes effect before torch is first imported; a value set in the
# environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

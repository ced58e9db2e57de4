"""The inference service: ``python -m app`` serves a checkpoint over HTTP (docs/api.md)."""

import os

# PyTorch's OpenMP threads spin between parallel regions by default. Beside the decode threads on
# a small CPU host that spinning takes the cores the decoders need and stalls the next forward
# pass: with the torch backend under load, passive waiting served more requests per second and cut
# p99/p50 from about 3 to about 1.1 (docs/benchmarks.md), at the price of slower lone requests.
# It only takes effect before torch is first imported; a value set in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

"""The engine: the model host (loading, going live, reloads, watching), batching, decoding and the backends;
no protocol and no web framework.

The edges see it only through its client seam, ``app/engine/client.py`` (plain data: no torch tensor, no live
model, no batcher); ``app/engine/local.py`` is that seam's implementation in this process. The rules are
checked by tests/test_architecture.py.
"""

"""Benchmarks: the HTTP load generator and the model-only limit (see docs/benchmarks.md)."""

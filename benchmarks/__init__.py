"""Benchmarks: the HTTP load generator and the model-only limit (see docs/benchmarks.md)."""

# Imported first so the model-only limit runs with the service's process settings (its OpenMP
# wait policy), which must be in place before torch is imported.
import app  # noqa: F401

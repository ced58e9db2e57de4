"""The Open Inference Protocol (KServe v2) over REST and gRPC: docs/design.md §8, docs/api.md."""

"""The engine: the serving model, batching, decoding and admission; no protocol and no web framework.

Every front door (app/http, the Open Inference Protocol's REST and gRPC edges) comes in through
``Service.admit`` (app/engine/service.py). The rule that this package never imports FastAPI, Starlette or
uvicorn is checked by tests/test_architecture.py.
"""

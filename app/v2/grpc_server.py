"""The Open Inference Protocol over gRPC (docs/design.md §8): ``inference.GRPCInferenceService`` on
``SERVE_GRPC_PORT``, in the process and event loop of the HTTP server.

``ModelInfer`` goes through the same door as ``/predict``: admission, deadlines (the request timeout,
or the client's own deadline when sooner), drain (new calls get UNAVAILABLE while admitted ones finish),
the API key (metadata ``authorization: Bearer <key>``), and the request metrics and access log line under
route ``grpc``, with the HTTP status the same error would have. Messages over ``SERVE_MAX_UPLOAD_BYTES``
are refused by gRPC itself (RESOURCE_EXHAUSTED) before they reach the servicer.

``ModelInfer`` is registered as a call whose message the servicer reads itself (the wire is the same as a
unary call's, so every client sees a unary method): the caller's key and the service's admission are
checked from the call's metadata before a byte of the message is read, so a refused caller costs no memory;
the message is then read within the deadline and its structure bounded before it is parsed
(app/v2/grpc_codec.py). ``SERVE_GRPC_MAX_CONCURRENT_RPCS`` bounds the calls served at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from app.config import Settings
from app.errors import ServiceError, Unauthorized
from app.front.auth import key_accepted
from app.front.door import Door
from app.front.requests import escaped_excerpt, is_safe_request_id, new_request_id, record_request
from app.v2.grpc_codec import (
    decode_model_infer,
    encode_model_infer,
    model_metadata_response,
    parse_model_infer,
    server_metadata_response,
)
from app.v2.infer import SERVER_NAME, Inferred, infer, server_version, target_model, timing_ms
from app.v2.proto import grpc_predict_v2_pb2 as pb
from app.v2.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from app.v2.tensors import InvalidRequest, model_metadata, resolve_model, server_metadata

log = logging.getLogger("app.v2")
ROUTE = "grpc"
SERVICE_NAME = "inference.GRPCInferenceService"
METHOD_PATH = f"/{SERVICE_NAME}/ModelInfer"  # what the access line names, as HTTP/2 carries it
_DEADLINE_MARGIN_S = 0.02
T = TypeVar("T")
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
_CODES_503 = {"overloaded": grpc.StatusCode.RESOURCE_EXHAUSTED, "not_ready": grpc.StatusCode.UNAVAILABLE}


def status_code(error: ServiceError) -> grpc.StatusCode:
    """The gRPC status of an error: by its HTTP status, and for 503 by its cause."""
    if error.status == 503:
        return _CODES_503.get(error.code, grpc.StatusCode.UNAVAILABLE)
    return _CODES.get(error.status, grpc.StatusCode.INTERNAL)


class _InternalError(ServiceError):
    """What the client learns of an unexpected failure (the traceback goes to the log)."""


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The protocol's six calls behind one ``Door``."""

    def __init__(self, door: Door, settings: Settings) -> None:
        self.door, self.settings = door, settings

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        """Live while the process runs."""
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Ready once the model is loaded and warm, until draining."""
        return pb.ServerReadyResponse(ready=self.door.ready_everywhere)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        """Whether the named model (and version) serves; NOT_FOUND for another."""
        if self.door.engine.model is None:  # loading: not ready, whatever the name
            return pb.ModelReadyResponse(ready=False)
        await self._unless_error(context, lambda: target_model(self.door, request.name, request.version))
        return pb.ModelReadyResponse(ready=self.door.ready_everywhere)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """The server's name, version and protocol extensions."""
        return server_metadata_response(server_metadata(SERVER_NAME, server_version()))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """The model's versions, inputs and outputs; NOT_FOUND for another, UNAVAILABLE while loading."""
        model = await self._unless_error(context, lambda: target_model(self.door, request.name, request.version))
        return model_metadata_response(model_metadata(model))

    async def ModelInfer(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        """Classify a batch, through the same service as ``/predict`` (the message: one ``ModelInferRequest``)."""
        started, clock = time.monotonic(), time.perf_counter()
        named = _Named()
        try:
            inferred = await self._infer(messages, context, started, named)
        except asyncio.CancelledError:  # the client cancelled or went away: its queued images were dropped
            self.door.metrics.rejections.labels(reason="disconnected").inc()
            self._record(named, 499, clock, None)
            raise
        except ServiceError as exc:
            error = exc
        except Exception:
            log.exception("unhandled error", extra={"request_id": named.log_id, "route": ROUTE})
            error = _InternalError("internal server error")
        else:
            self._record(named, 200, clock, timing_ms(inferred.answers, started))
            return encode_model_infer(inferred.model.name, inferred.model.version, named.answer_id, inferred.output)
        self._record(named, error.status, clock, None)
        await _abort(context, error)
        raise AssertionError("unreachable: abort raises")

    async def _infer(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext, started: float, named: _Named
    ) -> Inferred:
        door, settings = self.door, self.settings
        if not key_accepted(settings.api_key, _metadata(context, "authorization")):
            raise door.reject(Unauthorized("this call needs the metadata `authorization: Bearer <key>`"))
        deadline = started + settings.request_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:  # the client's own deadline, when sooner, a little early: ending the call
            # ourselves (504, DEADLINE_EXCEEDED) must not race gRPC cancelling it as a client gone away (499)
            deadline = min(deadline, time.monotonic() + remaining - _DEADLINE_MARGIN_S)
        async with door.admit(deadline) as call:  # before the message is read, as /predict admits
            data = await call.receive(_one_message(messages))
            model = door.serving_model()
            request = parse_model_infer(data, model, settings.max_batch_size)
            named.take(request.id)
            resolve_model(model, request.model_name, request.model_version)
            decoded = decode_model_infer(request, model, settings.max_batch_size)
            return await infer(call, decoded)

    async def _unless_error(self, context: grpc.aio.ServicerContext, get: Callable[[], T]) -> T:
        try:
            return get()
        except ServiceError as exc:
            await _abort(context, exc)
            raise AssertionError("unreachable: abort raises") from None

    def _record(self, named: _Named, status: int, clock: float, timing: dict[str, float] | None) -> None:
        """The request metrics and access log line of one ``ModelInfer``, as the HTTP middleware writes them."""
        fields: dict[str, object] = {"request_id": named.log_id, "method": "POST", "path": METHOD_PATH}
        if timing is not None:
            fields["timing_ms"] = timing
        if named.unsafe_id is not None:
            fields["client_request_id"] = named.unsafe_id
        record_request(self.door.metrics, ROUTE, status, time.perf_counter() - clock, **fields)


class _Named:
    """A call's request id: the one its answer echoes (the client's ``id``, as the protocol says) and the one
    its log line carries, which is the client's only when it is a sane token, as HTTP's ``X-Request-ID``;
    else a fresh one, with the client's shown escaped and cut short (``unsafe_id``)."""

    def __init__(self) -> None:
        self.log_id = self.answer_id = new_request_id()
        self.unsafe_id: str | None = None

    def take(self, client_id: str) -> None:
        if not client_id:
            return
        self.answer_id = client_id
        if is_safe_request_id(client_id):
            self.log_id = client_id
        else:
            self.unsafe_id = escaped_excerpt(client_id)


async def _one_message(messages: AsyncIterator[bytes]) -> bytes:
    async for message in messages:
        return message
    raise InvalidRequest("the call carried no ModelInferRequest")


async def _abort(context: grpc.aio.ServicerContext, error: ServiceError) -> None:
    """End the call with the error's status; its headers (``Retry-After``) go as trailing metadata."""
    context.set_trailing_metadata(tuple((name.lower(), value) for name, value in error.headers().items()))
    await context.abort(status_code(error), error.message)


def _metadata(context: grpc.aio.ServicerContext, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name and isinstance(value, str):
            return value
    return None


@dataclass(frozen=True)
class GrpcServer:
    """A started gRPC server: the port it listens on, and how to stop it."""

    server: grpc.aio.Server
    port: int

    async def stop(self, grace: float | None) -> None:
        """Refuse new calls and end the server, giving calls in progress up to ``grace`` seconds."""
        await self.server.stop(grace)


def _handlers(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """The protocol's six methods; ``ModelInfer`` reads its own message (see the module's docstring)."""
    unary: dict[str, type[Message]] = {
        "ServerLive": pb.ServerLiveRequest,
        "ServerReady": pb.ServerReadyRequest,
        "ModelReady": pb.ModelReadyRequest,
        "ServerMetadata": pb.ServerMetadataRequest,
        "ModelMetadata": pb.ModelMetadataRequest,
    }
    methods = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=kind.FromString,
            response_serializer=_serialize,
        )
        for name, kind in unary.items()
    }
    methods["ModelInfer"] = grpc.stream_unary_rpc_method_handler(
        servicer.ModelInfer, request_deserializer=None, response_serializer=_serialize
    )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def start_grpc_server(door: Door, settings: Settings, port: int | None = None) -> GrpcServer:
    """Serve the protocol behind ``door`` on ``SERVE_HOST`` and ``port`` (default ``SERVE_GRPC_PORT``; 0: any
    free port), on the running loop."""
    options = [
        ("grpc.max_receive_message_length", settings.max_upload_bytes),
        # Several workers share the port, as they share the HTTP one; a lone server must not join a stale one.
        ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
    ]
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=settings.grpc_max_concurrent_rpcs)
    server.add_generic_rpc_handlers((_handlers(InferenceServicer(door, settings)),))
    host = settings.host
    port = settings.grpc_port if port is None else port
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"gRPC cannot listen on {address} (SERVE_GRPC_PORT)")
    await server.start()
    log.info("gRPC listening on %s", address.rsplit(":", 1)[0] + f":{bound}")
    return GrpcServer(server, bound)

"""One decoded inference request through the door, for either transport: classify its batch on an admitted
``Call``, fail it on the first bad image, and build its output tensor."""

from __future__ import annotations

import importlib.metadata
import time
from dataclasses import dataclass

import numpy as np

from app.engine.client import Answer, ModelInfo
from app.front.door import Call, Door
from app.v2.tensors import InferRequest, OutputTensor, first_failure, output_tensor, resolve_model

SERVER_NAME = "resnet50-serving"


@dataclass(frozen=True)
class Inferred:
    """A request's answer: the model that computed it, its output, and its images' timings."""

    model: ModelInfo
    output: OutputTensor
    answers: list[Answer]


def server_version() -> str:
    """The installed project's version (``unknown`` when run from a checkout that was never installed)."""
    try:
        return importlib.metadata.version(SERVER_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def target_model(door: Door, name: str, version: str) -> ModelInfo:
    """The serving model, if ``name`` (and ``version``, when given) is it: else ``ModelNotFound``, and
    ``NotReady`` while no model is loaded."""
    model = door.serving_model()
    resolve_model(model, name, version)
    return model


async def infer(call: Call, request: InferRequest) -> Inferred:
    """Classify the request's batch on ``call``; one bad image fails the request with that image's error."""
    if isinstance(request.batch, np.ndarray):
        answers = await call.classify_tensors(request.batch)
    else:
        results = await call.classify_images(request.batch)
        failure = first_failure(results)
        if failure is not None:
            raise failure
        answers = [result for result in results if isinstance(result, Answer)]
    # Every image of a request is computed by the model that was serving when it arrived.
    return Inferred(answers[0].model, output_tensor(answers, request.output), answers)


def timing_ms(answers: list[Answer], started: float) -> dict[str, float]:
    """Milliseconds per step (the slowest image's) and the request's total since ``started`` (monotonic)."""
    return {
        "decode": round(1000 * max((a.decode_s for a in answers), default=0.0), 3),
        "queue": round(1000 * max((a.queue_s for a in answers), default=0.0), 3),
        "inference": round(1000 * max((a.run_s for a in answers), default=0.0), 3),
        "total": round(1000 * (time.monotonic() - started), 3),
    }

"""Response models: they shape the JSON answers and document them in OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str = Field(examples=["resnet50"])
    version: str = Field(description="first 12 hex digits of the checkpoint's SHA-256", examples=["3f2a9c1b7d0e"])


class PredictionOut(BaseModel):
    rank: int = Field(ge=1)
    class_id: int = Field(ge=0)
    label: str = Field(examples=["tabby"])
    score: float = Field(ge=0, le=1, description="softmax probability")


class Timing(BaseModel):
    """Milliseconds spent in each step of the request."""

    decode: float
    queue: float
    inference: float
    total: float


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    predictions: list[PredictionOut]
    timing_ms: Timing
    batch_size: int = Field(description="images in the model batch that served this request")


class SlotError(BaseModel):
    code: str = Field(examples=["invalid_image"])
    message: str


class BatchItem(BaseModel):
    """One file's result: ``predictions`` on success, ``error`` when this file could not be served."""

    index: int
    filename: str | None = None
    predictions: list[PredictionOut] | None = None
    batch_size: int | None = None
    error: SlotError | None = None


class BatchResponse(BaseModel):
    request_id: str
    model: ModelRef
    results: list[BatchItem]
    timing_ms: Timing = Field(description="decode, queue and inference: the slowest file's; total: the request's")


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class PreprocessingOut(BaseModel):
    resize_size: int
    crop_size: int
    mean: list[float]
    std: list[float]
    interpolation: str


class BatchingOut(BaseModel):
    max_batch_size: int
    max_batch_delay_ms: float
    max_queue_size: int
    request_timeout_s: float


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str
    num_classes: int
    trained: bool
    source: str
    created_at: str
    device: str
    precision: str
    backend: str
    loaded_at: str = Field(description="when this model started serving (ISO 8601, UTC)")
    preprocessing: PreprocessingOut
    metrics: dict[str, Any]
    batching: BatchingOut
    last_reload: dict[str, Any] | None = Field(
        description="the last reload's outcome: result (ok, failed), file (its name), at, took_ms, previous, "
        "current, error"
    )

"""The service's configuration: one ``Settings`` class read from ``SERVE_*`` environment variables.

Every value is validated when the settings are built, so a typo stops start-up with a message that
names the variable instead of surfacing later as a confusing failure under load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SERVE_"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class ConfigError(ValueError):
    """A configuration that cannot be served; the message names the variables to change."""


class Settings(BaseSettings):
    """Everything the service reads from its environment (DESIGN §4), with defaults for a CPU host."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")

    model_path: Path = Field(
        default=Path("weights/model.safetensors"), description="the .safetensors checkpoint to serve"
    )
    device: str = Field(default="auto", description="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        default="auto", description="auto: fp16 on CUDA, fp32 on CPU"
    )
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto", description="auto: onnxruntime on CPU, torch on CUDA"
    )
    decode: Literal["cpu", "gpu"] = Field(default="cpu", description="where images are decoded; gpu needs CUDA")
    max_batch_size: int = Field(default=8, ge=1, le=256, description="most images the model runs at once")
    max_batch_delay_ms: float = Field(default=4.0, ge=0, le=10_000, description="longest wait for a batch to fill")
    max_queue_size: int = Field(default=64, ge=1, le=100_000, description="images waiting for the model before 503")
    request_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="deadline of one request")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="largest request body")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="largest decoded image, width × height")
    api_key: SecretStr | None = Field(default=None, description="when set, predict endpoints need `Bearer <key>`")
    host: str = Field(default="0.0.0.0", min_length=1, description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on; 0: any free port")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(default="info")
    log_format: Literal["json", "text"] = Field(default="json", description="json for log shippers, text for people")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="server processes on the port, each with its own copy of the model; on a GPU more "
        "than one lifts the bound one Python process puts on throughput",
    )
    decode_threads: int = Field(default=2, ge=1, le=64, description="threads decoding and resizing images")
    inference_threads: int = Field(
        default=0, ge=0, le=256, description="intra-op threads of the model; 0: all usable cores"
    )
    cuda_graphs: bool = Field(
        default=True, description="CUDA only: replay one captured CUDA graph per batch bucket instead of eager"
    )
    onnx_cache_dir: Path | None = Field(
        default=None, description="where exported ONNX graphs are kept; default beside the model"
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.backend == "onnxruntime" and self.precision in ("fp16", "bf16"):
            raise ValueError(
                f"SERVE_BACKEND=onnxruntime runs fp32 only, but SERVE_PRECISION={self.precision}: "
                "set SERVE_PRECISION=fp32 (or auto), or SERVE_BACKEND=torch"
            )
        if self.max_queue_size < self.max_batch_size:
            raise ValueError(
                f"SERVE_MAX_QUEUE_SIZE={self.max_queue_size} is below SERVE_MAX_BATCH_SIZE={self.max_batch_size}: "
                "a full /predict/batch request could never be queued"
            )
        return self


def load_settings() -> Settings:
    """Read the settings from the environment; raise ``ConfigError`` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, each starting with the environment variable to change."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a cross-field check already names its variables
            lines.append(message)
            continue
        name = ENV_PREFIX + str(error["loc"][0]).upper()
        shown = "" if name == "SERVE_API_KEY" else f"={error['input']!r}"
        lines.append(f"{name}{shown}: {message}")
    return "invalid configuration: " + "; ".join(lines)

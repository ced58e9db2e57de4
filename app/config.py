"""The service's configuration: one ``Settings`` class read from ``SERVE_*`` environment variables.

Every value is validated when the settings are built, so a bad value stops start-up with a message that
names the variable instead of surfacing later as a confusing failure under load; a misspelt name is
reported with the closest real one (``unknown_variables``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.capacity import MAX_BATCH_SIZE, Capacity
from model import CHECKPOINT_FILENAME

ENV_PREFIX = "SERVE_"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class ConfigError(ValueError):
    """A configuration that cannot be served; the message names the variables to change."""


class Settings(BaseSettings):
    """Everything the service reads from its environment (docs/design.md §4), with defaults for a CPU host."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")

    model_path: Path = Field(
        default=Path("weights") / CHECKPOINT_FILENAME, description="the .safetensors checkpoint to serve"
    )
    model_dir: Path | None = Field(
        default=None,
        description="the folder POST /admin/reload may load checkpoints from; default the folder of SERVE_MODEL_PATH",
    )
    max_model_bytes: int = Field(
        default=1 << 30, ge=1, description="largest checkpoint file a load or reload reads (1 GiB)"
    )
    device: str = Field(default="auto", description="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        default="auto", description="auto: fp16 on CUDA, fp32 on CPU"
    )
    backend: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto", description="auto: onnxruntime on CPU, torch on CUDA"
    )
    decode: Literal["cpu", "gpu"] = Field(default="cpu", description="where images are decoded; gpu needs CUDA")
    reduced_decode: bool = Field(
        default=True,
        description="decode JPEGs at the smallest DCT scale that still covers the resize; false: the exact "
        "full-size path",
    )
    max_batch_size: int = Field(default=8, ge=1, le=MAX_BATCH_SIZE, description="most images the model runs at once")
    max_batch_delay_ms: float = Field(default=4.0, ge=0, le=10_000, description="longest wait for a batch to fill")
    max_queue_size: int = Field(default=64, ge=1, le=100_000, description="images waiting for the model before 503")
    request_timeout_s: float = Field(default=30.0, gt=0, le=3600, description="deadline of one request")
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="largest request body")
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="largest decoded image, width × height")
    api_key: SecretStr | None = Field(default=None, description="when set, predict endpoints need `Bearer <key>`")
    admin_key: SecretStr | None = Field(
        default=None,
        description="admin endpoints need `Bearer <key>`: this key, else SERVE_API_KEY; with neither they answer 403",
    )
    host: str = Field(default="0.0.0.0", min_length=1, description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on; 0: any free port")
    grpc_port: int = Field(
        default=8001, ge=0, le=65535, description="the Open Inference Protocol's gRPC port; 0: no gRPC server"
    )
    grpc_max_concurrent_rpcs: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="gRPC calls served at once; more get RESOURCE_EXHAUSTED at once (each may hold up to "
        "SERVE_MAX_UPLOAD_BYTES while its message arrives)",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(default="info")
    log_format: Literal["json", "text"] = Field(default="json", description="json for log shippers, text for people")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="server processes on the port, each with its own copy of the model; on a GPU more "
        "than one lifts the bound one Python process puts on throughput",
    )
    decode_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="threads decoding and resizing images, per worker; 0: from the host's usable cores shared "
        "among SERVE_WORKERS (half of them, at least 2, with the model on the CPU; all but one, 2 to 32, on a GPU)",
    )
    inference_threads: int = Field(
        default=0, ge=0, le=256, description="intra-op threads of the model; 0: all usable cores"
    )
    cuda_graphs: bool = Field(
        default=True, description="CUDA only: replay one captured CUDA graph per batch bucket instead of eager"
    )
    onnx_cache_dir: Path | None = Field(
        default=None, description="where exported ONNX graphs are kept; default beside the model"
    )
    watch_model: bool = Field(
        default=False, description="reload when a new checkpoint file is renamed onto SERVE_MODEL_PATH"
    )
    pages: bool = Field(default=True, description="serve the try-it page at / and the API docs at /docs and /redoc")

    @property
    def reload_dir(self) -> Path:
        """The folder reloads asked for over HTTP may read from (``SERVE_MODEL_DIR``)."""
        return self.model_dir if self.model_dir is not None else self.model_path.parent

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
    def _check_capacity(self) -> Settings:
        try:
            Capacity(self.max_batch_size, self.max_queue_size)
        except ValueError as exc:
            raise ValueError(
                f"SERVE_MAX_QUEUE_SIZE={self.max_queue_size}, SERVE_MAX_BATCH_SIZE={self.max_batch_size}: {exc}"
            ) from None
        return self


def load_settings() -> Settings:
    """Read the settings from the environment; raise ``ConfigError`` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``SERVE_*`` variable that is no setting, naming the closest real one if any.

    A warning rather than an error: orchestrators put variables of their own under the same prefix
    (Kubernetes' service links turn a Service named ``serve`` into ``SERVE_SERVICE_HOST`` and friends),
    and a server must not refuse to start over a name it does not own.
    """
    environ = os.environ if environ is None else environ
    known = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    lines = []
    for name in sorted(n for n in environ if n.upper().startswith(ENV_PREFIX) and n.upper() not in known):
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a setting of this service and is ignored{hint}")
    return lines


def describe_errors(exc: ValidationError) -> str:
    """One line per problem, each starting with the environment variable to change."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a cross-field check already names its variables
            lines.append(message)
            continue
        name = ENV_PREFIX + str(error["loc"][0]).upper()
        shown = "" if name in ("SERVE_API_KEY", "SERVE_ADMIN_KEY") else f"={error['input']!r}"
        lines.append(f"{name}{shown}: {message}")
    return "invalid configuration: " + "; ".join(lines)

"""Settings from the environment and the resolved runtime: bad values name their variable."""

from __future__ import annotations

import os

import pytest

from app.config import ConfigError, load_settings, unknown_variables
from app.engine.backends import Runtime, plan_runtime, resolve_runtime


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SERVE_")]:
        monkeypatch.delenv(name)
    settings = load_settings()
    assert (settings.device, settings.backend, settings.precision, settings.decode) == ("auto", "auto", "auto", "cpu")
    assert settings.port == 8000 and settings.log_format == "json" and settings.api_key is None


def test_values_are_read_from_serve_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("SERVE_MAX_BATCH_DELAY_MS", "2.5")
    monkeypatch.setenv("SERVE_API_KEY", "s3cret")
    monkeypatch.setenv("SERVE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("SERVE_DEVICE", "cuda:1")
    settings = load_settings()
    assert settings.max_batch_size == 16 and settings.max_batch_delay_ms == 2.5
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret"
    assert settings.log_level == "debug" and settings.device == "cuda:1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SERVE_MAX_BATCH_SIZE", "0"),
        ("SERVE_MAX_BATCH_SIZE", "many"),
        ("SERVE_MAX_BATCH_DELAY_MS", "-1"),
        ("SERVE_MAX_QUEUE_SIZE", "0"),
        ("SERVE_REQUEST_TIMEOUT_S", "0"),
        ("SERVE_MAX_UPLOAD_BYTES", "0"),
        ("SERVE_MAX_IMAGE_PIXELS", "x"),
        ("SERVE_PORT", "70000"),
        ("SERVE_DEVICE", "tpu"),
        ("SERVE_PRECISION", "int8"),
        ("SERVE_BACKEND", "tensorrt"),
        ("SERVE_DECODE", "fpga"),
        ("SERVE_LOG_LEVEL", "loud"),
        ("SERVE_LOG_FORMAT", "xml"),
    ],
)
def test_an_invalid_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_onnxruntime_refuses_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_BACKEND", "onnxruntime")
    monkeypatch.setenv("SERVE_PRECISION", "fp16")
    with pytest.raises(ConfigError, match=r"SERVE_BACKEND=onnxruntime runs fp32 only.*SERVE_PRECISION=fp16"):
        plan_runtime(load_settings())


def test_the_queue_must_hold_a_full_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_MAX_BATCH_SIZE", "32")
    monkeypatch.setenv("SERVE_MAX_QUEUE_SIZE", "16")
    with pytest.raises(ConfigError, match=r"SERVE_MAX_QUEUE_SIZE=16, SERVE_MAX_BATCH_SIZE=32: .* never be queued"):
        load_settings()


def test_the_api_key_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVE_API_KEY", "x" * 10)
    monkeypatch.setenv("SERVE_PORT", "nope")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "xxxxxxxxxx" not in str(info.value)


@pytest.mark.parametrize(
    ("settings", "cuda_devices", "expected"),
    [
        (("auto", "auto", "auto", "cpu"), 0, Runtime("cpu", "onnxruntime", "fp32")),
        (("auto", "auto", "auto", "cpu"), 1, Runtime("cuda:0", "torch", "fp16")),
        (("cuda", "auto", "bf16", "gpu"), 2, Runtime("cuda:0", "torch", "bf16", "gpu")),
        (("cuda:1", "torch", "fp32", "cpu"), 2, Runtime("cuda:1", "torch", "fp32")),
        (("cpu", "torch", "auto", "cpu"), 1, Runtime("cpu", "torch", "fp32")),
        (("cpu", "torch", "bf16", "cpu"), 0, Runtime("cpu", "torch", "bf16")),
    ],
)
def test_auto_resolves_by_device(settings: tuple[str, str, str, str], cuda_devices: int, expected: Runtime) -> None:
    device, backend, precision, decode = settings
    runtime = resolve_runtime(
        device=device, backend=backend, precision=precision, decode=decode, cuda_devices=cuda_devices
    )
    assert runtime == expected


@pytest.mark.parametrize(
    ("settings", "cuda_devices", "message"),
    [
        (("cuda", "auto", "auto", "cpu"), 0, "SERVE_DEVICE=cuda: no CUDA device"),
        (("cuda:2", "auto", "auto", "cpu"), 2, "SERVE_DEVICE=cuda:2: only 2 CUDA"),
        (("cuda", "onnxruntime", "auto", "cpu"), 1, "SERVE_BACKEND=onnxruntime runs on the CPU only"),
        (("cpu", "onnxruntime", "bf16", "cpu"), 0, "SERVE_BACKEND=onnxruntime runs fp32 only"),
        (("auto", "auto", "auto", "gpu"), 0, "SERVE_DECODE=gpu needs a CUDA device"),
    ],
)
def test_impossible_plans_are_refused(settings: tuple[str, str, str, str], cuda_devices: int, message: str) -> None:
    device, backend, precision, decode = settings
    with pytest.raises(ConfigError, match=message):
        resolve_runtime(device=device, backend=backend, precision=precision, decode=decode, cuda_devices=cuda_devices)


def test_unknown_serve_variables_are_named_with_the_closest_setting() -> None:
    environ = {
        "SERVE_MAX_BATCH_SZIE": "4",
        "SERVE_API_KEYS": "x",
        "SERVE_SERVICE_HOST": "10.0.0.1",  # what Kubernetes' service links make of a Service named "serve"
        "SERVE_PORT": "8000",
        "HOME": "/root",
    }
    lines = unknown_variables(environ)
    assert lines == [
        "SERVE_API_KEYS is not a setting of this service and is ignored; did you mean SERVE_API_KEY?",
        "SERVE_MAX_BATCH_SZIE is not a setting of this service and is ignored; did you mean SERVE_MAX_BATCH_SIZE?",
        "SERVE_SERVICE_HOST is not a setting of this service and is ignored",
    ]

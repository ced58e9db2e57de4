"""The protocol's tensors for this model: BYTES framing, FP32 bytes, input checks, outputs, metadata."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from app.errors import InvalidImage, InvalidParameter, UnsupportedMediaType
from app.v2.tensors import (
    InvalidRequest,
    ModelNotFound,
    RequestedOutput,
    TensorHeader,
    check_input,
    first_failure,
    join_elements,
    model_metadata,
    output_tensor,
    resolve_model,
    split_elements,
    tensor_from_raw,
    tensor_from_values,
)
from tests.app.v2.conftest import ModelShape, served

IMAGES = TensorHeader("image", "BYTES", (3,))


def test_bytes_elements_are_each_preceded_by_a_little_endian_length() -> None:
    raw = b"\x03\x00\x00\x00abc" + b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00hi"
    assert split_elements(IMAGES, raw) == [b"abc", b"", b"hi"]
    assert join_elements([b"abc", b"", b"hi"]) == raw
    big = bytes(range(256)) * 2
    assert join_elements([big]) == b"\x00\x02\x00\x00" + big  # 512, little-endian


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x03\x00\x00\x00abc\x00\x00", "2 stray bytes where a 4-byte length belongs"),
        (b"\x03\x00\x00\x00abc\x09\x00\x00\x00short", "element 1 declares 9 bytes but 5 remain"),
        (b"\xff\xff\xff\xffabc", "element 0 declares 4294967295 bytes but 3 remain"),
        (b"\x01\x00\x00\x00a\x01\x00\x00\x00b", "holds 2 elements but its shape [3] says 3"),
        (b"", "holds 0 elements but its shape [3] says 3"),
    ],
)
def test_bad_bytes_framing_is_a_clear_400(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        split_elements(IMAGES, raw)
    assert caught.value.status == 400


def test_fp32_tensors_are_little_endian_and_row_major() -> None:
    header = TensorHeader("input", "FP32", (1, 3, 1, 2))
    values = [0.5, -1.25, 2.0, 3.5, -0.0, 1e-3]
    tensor = tensor_from_raw(header, struct.pack("<6f", *values))
    assert tensor.dtype == np.float32 and tensor.shape == (1, 3, 1, 2)
    assert tensor.ravel().tolist() == pytest.approx(values)
    assert np.array_equal(tensor_from_values(header, values), tensor)


def test_fp32_with_the_wrong_byte_count_or_non_finite_values_is_refused() -> None:
    header = TensorHeader("input", "FP32", (1, 3, 1, 2))
    with pytest.raises(InvalidRequest, match="has 20 bytes of data; FP32 \\[1, 3, 1, 2\\] needs 24"):
        tensor_from_raw(header, bytes(20))
    with pytest.raises(InvalidRequest, match="NaN or infinite"):
        tensor_from_raw(header, struct.pack("<6f", 0, 0, float("nan"), 0, 0, 0))
    with pytest.raises(InvalidRequest, match="holds 5 values but its shape"):
        tensor_from_values(header, [0.0] * 5)
    with pytest.raises(InvalidRequest, match="numbers only"):
        tensor_from_values(header, [0.0, 1.0, "x", 0.0, 0.0, 0.0])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("header", "error", "message"),
    [
        (TensorHeader("pixels", "BYTES", (1,)), InvalidRequest, 'unknown input "pixels"'),
        (TensorHeader("image", "FP32", (1,)), InvalidRequest, 'input "image" must be BYTES, got FP32'),
        (TensorHeader("input", "BYTES", (1, 3, 4, 4)), InvalidRequest, 'input "input" must be FP32, got BYTES'),
        (TensorHeader("image", "BYTES", (1, 1)), InvalidRequest, r"must have shape \[N\] with N >= 1, got \[1, 1\]"),
        (TensorHeader("image", "BYTES", (0,)), InvalidRequest, r"got \[0\]"),
        (
            TensorHeader("input", "FP32", (1, 3, 8, 8)),
            InvalidRequest,
            r"\[N, 3, 4, 4\] with N >= 1, got \[1, 3, 8, 8\]",
        ),
        (TensorHeader("input", "FP32", (-1, 3, 4, 4)), InvalidRequest, r"got \[-1, 3, 4, 4\]"),
        (TensorHeader("image", "BYTES", (9,)), InvalidParameter, "9 images sent; at most 8"),
    ],
)
def test_inputs_are_checked_against_the_model(
    model: ModelShape, header: TensorHeader, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        check_input(header, model, max_batch_size=8)


def test_the_model_is_found_by_name_and_optional_version(model: ModelShape) -> None:
    resolve_model(model, "resnet50", "")
    resolve_model(model, "resnet50", model.version)
    with pytest.raises(ModelNotFound, match='unknown model "vgg16": this server serves "resnet50"') as caught:
        resolve_model(model, "vgg16", "")
    assert caught.value.status == 404
    with pytest.raises(ModelNotFound, match='has no version "000000000000"'):
        resolve_model(model, "resnet50", "000000000000")


def test_probabilities_come_back_as_fp32_rows() -> None:
    output = output_tensor([served(0.5, 0.25, 0.25), served(0.1, 0.7, 0.2)], RequestedOutput())
    assert (output.name, output.datatype, output.shape) == ("probabilities", "FP32", (2, 3))
    assert output.raw() == struct.pack("<6f", 0.5, 0.25, 0.25, 0.1, 0.7, 0.2)
    assert output.data() == pytest.approx([0.5, 0.25, 0.25, 0.1, 0.7, 0.2])


def test_classification_gives_the_best_k_as_score_class_label_strings() -> None:
    output = output_tensor([served(0.1, 0.7, 0.2), served(0.6, 0.15, 0.25)], RequestedOutput(classification=2))
    assert (output.datatype, output.shape) == ("BYTES", (2, 2))
    assert output.values == [b"0.700000:1:coffee", b"0.200000:2:rocket", b"0.600000:0:cat", b"0.250000:2:rocket"]
    assert output.data() == ["0.700000:1:coffee", "0.200000:2:rocket", "0.600000:0:cat", "0.250000:2:rocket"]
    assert output.raw() == join_elements(output.values)  # type: ignore[arg-type]


def test_classification_beyond_the_class_count_gives_every_class() -> None:
    output = output_tensor([served(0.1, 0.7, 0.2)], RequestedOutput(classification=10))
    assert output.shape == (1, 3)


def test_one_bad_image_fails_the_request_with_its_own_status_naming_it() -> None:
    assert first_failure([served(1, 0, 0), served(0, 1, 0)]) is None
    failure = first_failure([served(1, 0, 0), UnsupportedMediaType("ICO is not accepted"), InvalidImage("corrupt")])
    assert isinstance(failure, UnsupportedMediaType)
    assert (failure.status, failure.message) == (415, "image 1: ICO is not accepted")


def test_model_metadata_describes_both_inputs_and_the_output(model: ModelShape) -> None:
    assert model_metadata(model) == {
        "name": "resnet50",
        "versions": ["abcdef012345"],
        "platform": "pytorch",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, 4, 4]},
        ],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
    }

import pytest
import torch

from app.engine.backends.buckets import batch_buckets, bucket_for, pad_batch


@pytest.mark.parametrize(
    ("max_batch", "expected"),
    [(1, [1]), (2, [1, 2]), (8, [1, 2, 4, 8]), (12, [1, 2, 4, 8, 12]), (256, [1, 2, 4, 8, 16, 32, 64, 128, 256])],
)
def test_buckets_are_powers_of_two_ending_at_the_maximum(max_batch: int, expected: list[int]) -> None:
    assert batch_buckets(max_batch) == expected


def test_bucket_for_picks_the_smallest_that_fits() -> None:
    buckets = batch_buckets(12)
    assert [bucket_for(n, buckets) for n in range(1, 13)] == [1, 2, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12]
    with pytest.raises(ValueError, match="exceeds the largest bucket 12"):
        bucket_for(13, buckets)
    with pytest.raises(ValueError, match="at least 1"):
        batch_buckets(0)


def test_padding_appends_zero_rows_and_keeps_the_batch() -> None:
    batch = torch.randint(1, 256, (3, 3, 4, 4), dtype=torch.uint8)
    padded = pad_batch(batch, 4)
    assert padded.shape == (4, 3, 4, 4) and padded.dtype == torch.uint8
    assert torch.equal(padded[:3], batch) and not padded[3].any()
    assert pad_batch(batch, 3) is batch

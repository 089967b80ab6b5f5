"""Split arithmetic: exact 70/20/10 boundaries (and other fractions), read back through TFDS's own slicing."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest

from steps.splits import split_counts, tfds_specs


def test_cats_vs_dogs_is_split_70_20_10():
    """23,262 images: 16,283 / 4,652 / 2,327 (percent slices gave 70/19/11: 16,283 / 4,420 / 2,559)."""
    assert split_counts(23262, 0.7, 0.2) == {"train": 16283, "val": 4652, "test": 2327}


def test_digits_split_is_unchanged():
    assert split_counts(1797, 0.7, 0.2) == {"train": 1257, "val": 359, "test": 181}


def test_float_products_do_not_lose_an_image():
    """90 × 0.7 is 62.999… in floating point; 70 % of 90 images is 63."""
    assert split_counts(90, 0.7, 0.2) == {"train": 63, "val": 18, "test": 9}


@pytest.mark.parametrize("train, val", [(0.7, 0.2), (0.8, 0.1), (0.6, 0.2), (0.9, 0.05), (0.75, 0.15), (0.7, 0.0)])
def test_counts_are_exact_floors_at_every_size(train, val):
    t, v = Fraction(str(train)), Fraction(str(val))
    for n in range(3000):
        counts = split_counts(n, train, val)
        assert counts["train"] == math.floor(n * t), n
        assert counts["val"] == math.floor(n * v), n
        assert sum(counts.values()) == n


@pytest.mark.parametrize("train, val", [(0.7, 0.3), (1.0, 0.0), (0.0, 0.2), (0.7, -0.1)])
def test_fractions_that_leave_no_test_split_are_refused(train, val):
    with pytest.raises(ValueError, match="leave a test split"):
        split_counts(100, train, val)


def test_tfds_reads_the_specs_as_exact_70_20_10():
    """The strings handed to TFDS, resolved by TFDS's own slicing code (offline: no data needed)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets.core.splits import SplitInfo

    infos = {"train": SplitInfo(name="train", shard_lengths=[23262], num_bytes=0, filename_template=None)}

    def lengths(specs: list[str]) -> list[int]:
        out = []
        for spec in specs:
            (absolute,) = tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos)
            out.append((absolute.to or 23262) - (absolute.from_ or 0))
        return out

    assert lengths(tfds_specs("train", split_counts(23262, 0.7, 0.2))) == [16283, 4652, 2327]
    # What the percent slices used to ask for: 19 % validation, 11 % test.
    assert lengths(["train[:70%]", "train[70%:89%]", "train[89%:]"]) == [16283, 4420, 2559]

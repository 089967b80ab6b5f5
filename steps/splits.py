"""Split arithmetic: how many images go to train, validation and test, computed exactly."""
from __future__ import annotations

from fractions import Fraction


def exact(fraction: float) -> Fraction:
    """The decimal the user wrote (0.7 -> 7/10), not the binary float nearest to it."""
    return Fraction(repr(float(fraction)))


def split_counts(n: int, train_fraction: float, val_fraction: float) -> dict[str, int]:
    """Train and validation rounded down, so small datasets still give the test split its share.

    Exact rational arithmetic: with floats, 0.7 + 0.2 is 0.8999…, which once turned the
    article's 70/20/10 into 70/19/11.
    """
    train, val = exact(train_fraction), exact(val_fraction)
    if not (0 < train < 1 and 0 <= val < 1 and train + val < 1):
        raise ValueError(f"train/val fractions {train_fraction}/{val_fraction} must be in (0, 1) and leave a test split")
    n_train = (n * train.numerator) // train.denominator
    n_val = (n * val.numerator) // val.denominator
    return {"train": n_train, "val": n_val, "test": n - n_train - n_val}


def tfds_specs(split: str, counts: dict[str, int]) -> list[str]:
    """TFDS split strings with absolute boundaries (TFDS's own percent slices round to whole percents)."""
    a = counts["train"]
    b = a + counts["val"]
    return [f"{split}[:{a}]", f"{split}[{a}:{b}]", f"{split}[{b}:]"]

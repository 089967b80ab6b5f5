"""Which tf.distribute strategy trains the baseline: mirrored over several GPUs, else the default."""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from steps.config import DISTRIBUTE


def strategy(mode: str = "auto", devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """``auto``: MirroredStrategy over ``devices`` (default: every visible GPU) when there are two or more.

    ``off``, or fewer than two devices: the default strategy (one device, as without this).
    """
    if mode not in DISTRIBUTE:
        raise ValueError(f"unknown distribute mode {mode!r}: use {' or '.join(DISTRIBUTE)}")
    if mode == "off":
        return tf.distribute.get_strategy()
    names = list(devices) if devices is not None else [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(names) < 2:
        return tf.distribute.get_strategy()
    return tf.distribute.MirroredStrategy(devices=names)

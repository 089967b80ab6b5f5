"""Weights from a local file (for machines that cannot reach the Keras download host)."""
from __future__ import annotations

import numpy as np
import pytest

from steps.config import TrainConfig


@pytest.fixture(scope="module")
def saved_backbone(tmp_path_factory):
    """An EfficientNet-B0 backbone trained from nothing (random weights), saved as a weights file."""
    import keras

    keras.utils.set_random_seed(7)
    backbone = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="max")
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    backbone.save_weights(path)
    return path, backbone


def test_efficientnet_loads_weights_from_a_file_by_path(saved_backbone):
    from steps import model as model_mod

    path, source = saved_backbone
    cfg = TrainConfig(model="efficientnet_b0", weights=str(path))
    model_mod.check(cfg)  # the file is accepted before any data is loaded
    model = model_mod.build(cfg, 3, 32)
    for name in ("stem_conv", "block4a_expand_conv", "top_conv"):
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], source.get_layer(name).get_weights()[0])
    assert model.output_shape == (None, 3), "the classifier head is new, on top of the loaded backbone"


def test_weights_of_another_architecture_are_refused_in_one_line(tmp_path):
    from steps import model as model_mod

    other = model_mod.build(TrainConfig(model="tiny_cnn", weights="none"), 3, 16)
    path = tmp_path / "tiny.weights.h5"
    other.save_weights(path)
    with pytest.raises(model_mod.ModelError, match="does not fit EfficientNet-B0") as err:
        model_mod.check(TrainConfig(model="efficientnet_b0", weights=str(path)))
    assert "\n" not in str(err.value)


def test_a_missing_weights_file_is_named(tmp_path):
    from steps import model as model_mod

    with pytest.raises(model_mod.ModelError, match=r"weights file .*nope\.h5 does not exist"):
        model_mod.check(TrainConfig(model="efficientnet_b0", weights=str(tmp_path / "nope.h5")))

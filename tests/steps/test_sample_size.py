"""The pipeline sizes the device sample for the gate's power and states the detectable drop on each version."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge import contract, gate_power
from edge.bundle import load_sample
from steps import sample_size


@pytest.mark.parametrize(("text", "value"), [("auto", 0), ("AUTO", 0), ("32", 32), ("32.0", 32), (7, 7)])
def test_parse(text, value):
    assert sample_size.parse(text) == value


@pytest.mark.parametrize("text", ["0", "-3", "2.5", "many", ""])
def test_parse_refuses_with_the_fix(text):
    with pytest.raises(ValueError, match="give auto"):
        sample_size.parse(text)


def test_choose_auto_is_the_power_calculation_and_a_given_size_is_kept_within_the_test_split():
    auto = sample_size.choose(0, 0.934, 224, available=2326)
    assert auto == gate_power.sample_size(0.934, contract.DEFAULT_MAX_ACCURACY_DROP, 224 * 224 * 3, 2326, contract.GATE_POWER)
    given = sample_size.choose(32, 0.934, 224, available=2326)
    assert (given.size, given.detectable_drop) == (32, gate_power.detectable_drop(0.934, 32))
    assert sample_size.choose(500, 0.934, 224, available=40).size == 40


def test_gate_figures_are_the_tags_a_device_reads():
    tags, metrics = sample_size.gate_figures(0.97, 167)
    drop = gate_power.detectable_drop(0.97, 167)
    assert tags == {contract.TAG_GATE_DETECTABLE_DROP: f"{drop:g}", contract.TAG_GATE_POWER: "0.9",
                    contract.TAG_GATE_SAMPLE_SIZE: "167"}
    assert metrics == {contract.M_GATE_DETECTABLE_DROP: drop}
    # One image can never fall below a bound with a 0.1 % false alarm rate: the gate refuses nothing, and says so.
    assert sample_size.gate_figures(0.97, 1) == ({contract.TAG_GATE_DETECTABLE_DROP: "none", contract.TAG_GATE_POWER: "0.9",
                                                  contract.TAG_GATE_SAMPLE_SIZE: "1"}, {})


def test_the_pipeline_bundles_the_chosen_sample_and_logs_its_power(folder_run, client, tmp_path):
    """The session's `folder_run` (tests/conftest.py) leaves --sample-size at auto."""
    assert "sample images: the device gate" in folder_run.proc.stdout
    tflite = {variant: mv for variant, mv in folder_run.versions.items() if mv.tags.get(contract.TAG_FORMAT) == "tflite"}
    assert set(tflite) == set(contract.VARIANTS)
    for variant, mv in tflite.items():
        n = int(mv.tags[contract.TAG_GATE_SAMPLE_SIZE])
        got = Path(client.download_artifacts(mv.run_id, contract.ARTIFACT_DIR, str(tmp_path / variant)))
        images, labels = load_sample(got)
        assert len(labels) == len(images) == n > 0 and images.dtype == np.uint8, variant
        accuracy = client.get_run(mv.run_id).data.metrics[contract.M_ACCURACY]
        drop = gate_power.detectable_drop(accuracy, n, contract.GATE_POWER)
        assert mv.tags[contract.TAG_GATE_DETECTABLE_DROP] == ("none" if drop is None else f"{drop:g}"), variant
        if drop is not None:
            assert client.get_run(mv.run_id).data.metrics[contract.M_GATE_DETECTABLE_DROP] == pytest.approx(drop)

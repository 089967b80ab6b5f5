"""The pipeline on an image folder the test builds: labels from folder names, int8 and QAT within budget."""
from __future__ import annotations

import pytest

from edge import contract
from tests.images import CLASSES

# The run itself: the session's `folder_run` (tests/conftest.py), shared with test_mlproject and test_sample_size.


def test_labels_come_from_folder_names(folder_run):
    assert folder_run.versions["int8"].tags[contract.TAG_LABELS] == ",".join(sorted(CLASSES))


@pytest.mark.parametrize("variant, budget", [("int8", 1.0), ("qat", 0.5), ("dynamic", 1.0), ("fp16", 0.5)])
def test_quantized_accuracy_is_within_budget(folder_run, client, variant, budget):
    versions = folder_run.versions
    metrics = client.get_run(versions[variant].run_id).data.metrics
    baseline = client.get_run(versions[contract.BASELINE].run_id).data.metrics[contract.M_ACCURACY]
    assert baseline >= 0.9, "the generated patterns are easy: the baseline must learn them"
    assert metrics[contract.M_DROP] <= budget, f"{variant} lost {metrics[contract.M_DROP]:.2f} points"
    assert metrics[contract.M_DROP] == pytest.approx(100 * (baseline - metrics[contract.M_ACCURACY]), abs=1e-6)

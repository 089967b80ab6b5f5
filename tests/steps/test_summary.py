"""The parent run's summary: best int8-family drop, smallest and fastest within the accuracy budget."""
from __future__ import annotations

import re

from edge import contract
from steps.report import Row, markdown_table
from steps.summary import description, summarize


def _row(variant: str, version: str, drop: float, size: int, p50: float | None) -> Row:
    return Row(variant, version, 0.9 - drop / 100, drop, size, 1_000_000 / size, p50, p50, 0.1 / p50 if p50 else None)


ROWS = [
    _row(contract.BASELINE, "1", 0.0, 1_000_000, None),
    _row("fp32", "2", 0.0, 400_000, 0.10),
    _row("fp16", "3", 0.0, 200_000, 0.10),
    _row("dynamic", "4", 0.3, 110_000, 0.06),
    _row("int8", "5", 5.7, 100_000, 0.03),  # the article's int8: fastest and smallest, but over budget
    _row("qat", "6", 0.4, 105_000, 0.035),
]


def test_summary_picks_within_the_budget_and_the_best_of_the_int8_family():
    found = summarize(ROWS, budget_points=1.0)
    assert found.best_int8.variant == "qat"  # 0.4 beats int8's 5.7
    assert found.smallest.variant == "qat"  # int8 is smaller but loses 5.7 points
    assert found.fastest.variant == "qat"
    assert found.metrics()[contract.M_BEST_INT8_DROP] == 0.4
    assert found.tags()[contract.TAG_SMALLEST] == "qat (v6)"
    loose = summarize(ROWS, budget_points=10.0)
    assert (loose.smallest.variant, loose.fastest.variant) == ("int8", "int8")


def test_no_variant_within_budget_is_said_not_hidden():
    found = summarize(ROWS, budget_points=-1.0)
    assert found.smallest is None and found.fastest is None
    assert contract.M_SMALLEST_SIZE not in found.metrics()
    assert found.tags()[contract.TAG_FASTEST] == "none"
    text = description("t", found, ROWS[0], False, "digits", markdown_table(ROWS), "edgeq-digits-tiny_cnn")
    assert "No TFLite variant is within -1 accuracy points." in text


def test_the_baseline_and_reused_rows_never_count_as_variants():
    rows = [_row(contract.BASELINE, "reused", 0.0, 50, None), _row("fp16", "7", 0.0, 200_000, 0.1)]
    found = summarize(rows)
    assert found.smallest.variant == "fp16" and found.best_int8 is None
    assert found.tags()[contract.TAG_BEST_INT8] == "none"


def test_description_fills_the_model_name_and_rounds_awkward_floats():
    rows = [_row(contract.BASELINE, "1", 0.0, 1_234_567, None), _row("fp32", "2", 0.0, 401_234, 0.0461234567),
            _row("int8", "3", 0.5524861878453038, 117_345, 0.0271234567)]
    found = summarize(rows, budget_points=1 / 3)
    text = description("t", found, rows[0], False, "digits", markdown_table(rows), "edgeq-digits-tiny_cnn")
    assert '`mlflow.pyfunc.load_model("models:/edgeq-digits-tiny_cnn@production")`' in text
    assert "`models:/edgeq-digits-tiny_cnn/2`" in text and "NAME" not in text  # the smallest within the budget
    assert "within 0.33 accuracy points" in text and "drop +0.55 points" in text
    assert not re.search(r"\d\.\d{4,}", text), text
    assert found.tags()[contract.TAG_BUDGET] == "0.33"

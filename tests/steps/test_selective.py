"""Which layers the selective variant keeps float."""
from steps.selective import suspects


def _rows(*errors: float) -> list[dict]:
    return [{"tensor_name": f"t{i}", "rmse_per_step": e} for i, e in enumerate(errors)]


def test_layers_above_the_threshold_stay_float_worst_first():
    assert suspects(_rows(0.1, 0.9, 0.2, 1.5, 0.3)) == ["t3", "t1"]


def test_at_least_the_worst_five_percent_stay_float():
    rows = _rows(*[0.01 * i for i in range(40)])  # none above 0.7
    assert suspects(rows) == ["t39", "t38"]
    assert suspects(_rows(0.1, 0.2)) == ["t1"]

"""What the pipeline (parent) run says on its own: summary metrics, tags naming the versions, a description."""
from __future__ import annotations

from dataclasses import dataclass

from edge import contract
from steps.report import Row


@dataclass(frozen=True)
class Summary:
    budget_points: float
    best_int8: Row | None  # the int8-family variant losing least
    smallest: Row | None  # smallest TFLite variant within the budget
    fastest: Row | None  # fastest on the host within the budget

    def metrics(self) -> dict[str, float]:
        out = {}
        if self.best_int8:
            out[contract.M_BEST_INT8_DROP] = self.best_int8.drop_points
        if self.smallest:
            out[contract.M_SMALLEST_SIZE] = float(self.smallest.size_bytes)
            out[contract.M_SMALLEST_RATIO] = self.smallest.size_ratio
        if self.fastest:
            out[contract.M_FASTEST_P50] = self.fastest.p50_ms
            out[contract.M_FASTEST_SPEEDUP] = self.fastest.speedup
        return out

    def tags(self) -> dict[str, str]:
        out = {contract.TAG_BUDGET: points(self.budget_points)}
        for key, row in ((contract.TAG_BEST_INT8, self.best_int8), (contract.TAG_SMALLEST, self.smallest),
                         (contract.TAG_FASTEST, self.fastest)):
            out[key] = _name(row) if row else "none"
        return out


def points(value: float) -> str:
    """Accuracy points as people write them: at most two decimals, no trailing zeros (1, 0.5, 0.33)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _name(row: Row) -> str:
    return f"{row.variant} (v{row.version})" if row.version.isdigit() else row.variant


def summarize(rows: list[Row], budget_points: float = contract.DEFAULT_MAX_ACCURACY_DROP) -> Summary:
    """Ties go to the variant listed first (the pipeline lists them in build order)."""
    tflite = [r for r in rows if r.variant != contract.BASELINE and r.p50_ms is not None]
    int8 = [r for r in tflite if r.variant in contract.INT8_FAMILY]
    within = [r for r in tflite if r.drop_points <= budget_points]
    return Summary(
        budget_points=budget_points,
        best_int8=min(int8, key=lambda r: r.drop_points) if int8 else None,
        smallest=min(within, key=lambda r: r.size_bytes) if within else None,
        fastest=min(within, key=lambda r: r.p50_ms) if within else None,
    )


def description(title: str, summary: Summary, baseline: Row, baseline_reused: bool, dataset_line: str, table: str,
                model_name: str) -> str:
    """The run's description (Markdown, shown at the top of the run page): every figure rounded for people."""
    trained = "reused from an earlier run with the same data and training parameters" if baseline_reused else "trained in this run"
    lines = [
        f"**{title}**",
        "",
        f"- Data: {dataset_line}",
        f"- Keras baseline: {100 * baseline.accuracy:.2f} % test accuracy, {baseline.size_bytes / 1e6:.3f} MB ({trained})",
    ]
    if summary.best_int8:
        b = summary.best_int8
        lines.append(f"- Best int8-family variant: {_name(b)}, drop {b.drop_points:+.2f} points, "
                     f"{b.size_ratio:.1f}× smaller, {b.speedup:.2f}× faster than fp32 on the host")
    budget = f"within {points(summary.budget_points)} accuracy points"
    if summary.smallest:
        s = summary.smallest
        lines.append(f"- Smallest {budget}: {_name(s)}, {s.size_bytes / 1e6:.3f} MB ({s.size_ratio:.1f}× smaller than Keras)")
    if summary.fastest:
        f = summary.fastest
        lines.append(f"- Fastest on the host {budget}: {_name(f)}, p50 {f.p50_ms:.3f} ms ({f.speedup:.2f}× fp32)")
    if not summary.smallest:
        lines.append(f"- No TFLite variant is {budget}.")
    example = next((r.version for r in (summary.smallest, summary.best_int8) if r and r.version.isdigit()), None)
    load = f"`mlflow.pyfunc.load_model(\"models:/{model_name}@{contract.DEFAULT_ALIAS}\")` once one is promoted"
    if example:
        load += f", or one version: `models:/{model_name}/{example}`"
    lines += ["", f"Each variant is a child run and a registered version of `{model_name}` (an MLflow model: load it with "
              f"{load}); devices report to the version's run. "
              "Artifacts: `comparison.md`, `comparison.html`, `tradeoff.png`.", "", table]
    return "\n".join(lines)

"""The metrics file of an evaluation and its summary table.

Baselines are scored on the same rows with the same checks, at the adapter's pooled token ratio,
so ``dvc metrics diff`` shows each adapter next to what naive compression achieves.
"""

from __future__ import annotations

from typing import Any, Sequence

from compression_layer.evaluate.baselines import BASELINES, compress
from compression_layer.evaluate.metrics import by_domain, ratio_stats, summarize
from compression_layer.evaluate.predictions import output_row
from compression_layer.evaluate.testset import TestRow


def baseline_rows(name: str, tests: Sequence[TestRow], predictions: Sequence[dict], ratio: float) -> list[dict]:
    """Rows shaped like predictions, with baseline ``name``'s output at token ratio ``ratio``."""
    rows = []
    for test, pred in zip(tests, predictions):
        output = compress(name, test.input_text, pred["input_tokens"], ratio)
        rows.append({
            "domain": test.domain, "expected_output": test.expected_output, "input_tokens": pred["input_tokens"],
            "baseline_output": output, **output_row(test, output, pred["input_tokens"]),
        })  # fmt: skip
    return rows


def build_metrics(
    tests: Sequence[TestRow],
    predictions: Sequence[dict],
    loss: dict[str, Any] | None,
    throughput: dict[str, Any] | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Everything metrics/eval.json holds; ``tests`` and ``predictions`` are aligned by position."""
    overall = summarize(predictions)
    pooled = overall["token_ratio"]["pooled"]
    ratio = min(pooled, 1.0) if pooled is not None else 1.0
    baselines = {}
    for name in BASELINES:
        rows = baseline_rows(name, tests, predictions, ratio)
        baselines[name] = summarize(rows, output_key="baseline_output")  # overall only: metrics stay readable
    return {
        **overall,
        "expected_token_ratio": ratio_stats(
            [p["input_tokens"] for p in predictions], [p["expected_tokens"] for p in predictions]
        ),
        "by_domain": by_domain(predictions),
        "test_loss": (loss or {}).get("loss"),
        "test_perplexity": (loss or {}).get("perplexity"),
        "test_loss_rows": (loss or {}).get("rows"),
        "throughput": throughput,
        "baselines": {"ratio": ratio, **baselines},
        "settings": settings,
    }


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if percent else f"{value:.1f}"


def _table_row(name: str, summary: dict[str, Any]) -> list[str]:
    ratio = summary["token_ratio"]
    return [
        name, str(summary["rows"]), _fmt(ratio["mean"], True), _fmt(ratio["median"], True), _fmt(ratio["p90"], True),
        _fmt(ratio["pooled"], True), _fmt(summary["numbers_kept"], True), _fmt(summary["identifiers_kept"], True),
        _fmt(summary["negation_kept"], True), _fmt(summary["chrf"]), str(summary["degenerate"]["any"]),
    ]  # fmt: skip


def summary_table(metrics: dict[str, Any]):
    """A rich Table: the adapter overall and per domain, then each baseline at the adapter's ratio."""
    from rich.table import Table

    table = Table(
        title="token ratio % (cl100k out/in, lower is denser) | kept % | chrF vs expected | degenerate rows",
        caption=f"baselines at the adapter's pooled ratio ({_fmt(metrics['baselines']['ratio'], True)}%)",
    )
    table.add_column("", no_wrap=True)
    for column in ("rows", "mean", "median", "p90", "pooled", "numbers", "idents", "negation", "chrF", "degen."):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_row(*_table_row("adapter", metrics))
    for domain, summary in metrics["by_domain"].items():
        table.add_row(*_table_row(f"  {domain}", summary))
    table.add_section()
    for name in BASELINES:
        table.add_row(*_table_row(name, metrics["baselines"][name]))
    return table


def print_summary(metrics: dict[str, Any], console=None) -> None:
    """The table, then test loss and throughput in one line each."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:  # a log file: do not squeeze the table into 80 columns
        console.width = max(console.width, 110)
    console.print(summary_table(metrics))
    if metrics.get("test_loss") is not None:
        console.print(
            f"test loss {metrics['test_loss']:.4f}, perplexity {metrics['test_perplexity']:.2f} "
            f"({metrics['test_loss_rows']} rows, prompt masked)"
        )
    speed = metrics.get("throughput") or {}
    if speed.get("rows"):
        console.print(
            f"generated {speed['rows']} rows in {speed['seconds']:.1f} s: {speed['rows_per_sec']:.2f} rows/s, "
            f"{speed['generated_tokens_per_sec']:.1f} generated tokens/s (batch size {speed['batch_size']})"
        )

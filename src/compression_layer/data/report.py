"""The short summary table a data stage prints (rich), built from its stats dict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def summary_table(title: str, stats: dict[str, Any]) -> Table:
    """Rows in / kept / rejected (+ collapsed) and the non-zero reject reasons, per domain."""
    domains = list(stats.get("per_domain", {}))
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("total", justify="right")
    for domain in domains:
        table.add_column(domain, justify="right")

    def row(label: str, key: str, total: Any) -> None:
        table.add_row(label, str(total), *(str(stats["per_domain"][d].get(key, "")) for d in domains))

    row("rows in", "rows", stats["rows_in"])
    row("kept", "kept", stats["kept"])
    if "duplicates_collapsed" in stats:
        row("duplicates collapsed", "collapsed", stats["duplicates_collapsed"])
    row("rejected", "rejected", stats["rejected"])
    for reason, count in stats.get("rejected_by_reason", {}).items():
        if count:
            table.add_row(
                f"  {reason}",
                str(count),
                *(str(stats["per_domain"][d]["rejected_by_reason"].get(reason, 0)) for d in domains),
            )
    return table


def print_summary(title: str, stats: dict[str, Any], notes: list[str] | None = None) -> None:
    console = Console(soft_wrap=True)
    console.print(summary_table(title, stats))
    for note in notes or ():
        console.print(note, highlight=False)

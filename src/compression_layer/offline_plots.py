"""Render DVC plots into one self-contained HTML page that works offline.

`dvc plots show` / `dvc plots diff` write HTML that loads vega from a CDN, which is blank without a
network. Here DVC still does the work of collecting the series of each revision (`--json`); vl-convert
renders every vega-lite spec to PNG locally, and the page inlines them with any image plots.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def dvc_plots_json(revisions: list[str], cwd: str | Path = ".") -> dict[str, list[dict[str, Any]]]:
    """The plots DVC would show, as `{plot id: [rendered items]}` (`plots diff` when revisions are given)."""
    # The venv's dvc, also when the venv is not activated.
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    cmd = [dvc, "plots", "diff", *revisions, "--json"] if revisions else [dvc, "plots", "show", "--json"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc plots failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout).get("data", {})


def _png_of_spec(spec: dict[str, Any]) -> bytes:
    import vl_convert

    return vl_convert.vegalite_to_png(spec, scale=1.5)


def render_page(plots: dict[str, list[dict[str, Any]]], cwd: str | Path = ".") -> str:
    """An HTML page with every plot as an inline PNG (no scripts, no network)."""
    sections = []
    for plot_id, items in plots.items():
        for item in items:
            revs = ", ".join(item.get("revisions") or [])
            if item.get("type") == "vega":
                png = _png_of_spec(item["content"])
            elif item.get("type") == "image":
                png = (Path(cwd) / item["url"]).read_bytes()  # absolute urls stay absolute
            else:
                continue
            data = base64.b64encode(png).decode()
            sections.append(
                f"<section><h2>{html.escape(plot_id)}</h2><p>{html.escape(revs)}</p>"
                f'<img alt="{html.escape(plot_id)}" src="data:image/png;base64,{data}"></section>'
            )
    body = "\n".join(sections) or "<p>No plots.</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>DVC plots (offline)</title>"
        "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}section{margin-bottom:2em}</style>"
        f"</head><body><h1>DVC plots</h1>\n{body}\n</body></html>\n"
    )

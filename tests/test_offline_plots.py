"""The offline plots page: every DVC plot as an inline PNG, nothing loaded from the network."""

from __future__ import annotations

import base64
import re

from compression_layer.offline_plots import render_page

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_page_inlines_vega_and_image_plots_without_network(tmp_path):
    picture = tmp_path / "curve.png"
    picture.write_bytes(PNG_MAGIC + b"rest")
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}]},
        "mark": "line",
        "encoding": {"x": {"field": "step", "type": "quantitative"}, "y": {"field": "loss", "type": "quantitative"}},
    }
    plots = {
        "loss": [{"type": "vega", "revisions": ["workspace", "exp-1"], "content": spec}],
        "curve.png": [{"type": "image", "revisions": ["workspace"], "url": "curve.png"}],
    }
    page = render_page(plots, cwd=tmp_path)
    images = [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert len(images) == 2
    assert all(img.startswith(PNG_MAGIC) for img in images)
    assert images[1] == picture.read_bytes()
    assert "<script" not in page and not re.search(r'(src|href)="https?://', page)
    assert "workspace, exp-1" in page

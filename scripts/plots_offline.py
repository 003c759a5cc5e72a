"""Write DVC's plots as one self-contained HTML page (inline PNGs) that opens offline.

    python scripts/plots_offline.py                      # workspace, like `dvc plots show`
    python scripts/plots_offline.py HEAD exp-1a2b3       # compare revisions, like `dvc plots diff`
"""

from __future__ import annotations

import argparse
import sys

from compression_layer.io import atomic_open
from compression_layer.offline_plots import dvc_plots_json, render_page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="*", help="git revisions or experiment names to compare")
    parser.add_argument("-o", "--output", default="dvc_plots/offline.html", help="HTML file to write")
    args = parser.parse_args()
    try:
        page = render_page(dvc_plots_json(args.revisions))
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with atomic_open(args.output) as fh:
        fh.write(page)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

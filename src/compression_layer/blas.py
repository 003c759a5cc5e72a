"""Which BLAS MLX's CPU matrix multiplies actually run on, for run.json, and its thread count.

On Linux the mlx-cpu wheel bundles a reference BLAS (mlx_cpu.libs/libblas-*.so, ~6 GFLOP/s);
`make setup` (scripts/setup_blas.sh) links that file to Debian's OpenBLAS (~30x faster). What the
process really mapped is the only reliable answer, so this reads /proc/self/maps after loading MLX.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from typing import Any

# Most specific first: a path naming OpenBLAS, MKL or BLIS wins over a generic libblas.
_KINDS = (
    ("openblas", re.compile(r"openblas", re.I)),
    ("mkl", re.compile(r"libmkl_", re.I)),
    ("blis", re.compile(r"libblis", re.I)),
    ("reference", re.compile(r"/mlx_cpu\.libs/libblas-")),  # the wheel's bundled reference BLAS
    ("reference", re.compile(r"/libblas\.so[.\d]*$")),  # a system reference libblas (libblas3)
)

# OPENBLAS_NUM_THREADS when the user has not set it. The tiny model's LoRA steps train as fast on one
# thread as on two and generate faster (threading overhead dominates small matrices).
DEFAULT_OPENBLAS_THREADS = 1


def _mapped_libraries() -> list[str]:
    paths = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                path = parts[5].strip()
                if path not in paths:
                    paths.append(path)
    return paths


def _openblas_info(path: str) -> dict[str, Any]:
    """Version string and thread count straight from the loaded OpenBLAS (same handle, not a reload)."""
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_config.restype = ctypes.c_char_p
        return {
            "config": lib.openblas_get_config().decode().strip(),
            "num_threads": int(lib.openblas_get_num_threads()),
        }
    except (OSError, AttributeError):
        return {}


def loaded_blas() -> dict[str, Any]:
    """The BLAS of this process's MLX: {"name": openblas|reference|mkl|blis|accelerate|none, "path", ...}.

    Imports mlx.core first (a no-op when already imported) so the answer is about MLX's library.
    """
    import mlx.core  # noqa: F401

    if platform.system() == "Darwin":
        # MLX on macOS always links Apple's Accelerate framework.
        return {"name": "accelerate", "path": "/System/Library/Frameworks/Accelerate.framework"}
    if not os.path.exists("/proc/self/maps"):
        return {"name": "unknown", "path": None}
    libraries = _mapped_libraries()
    for name, pattern in _KINDS:
        for path in libraries:
            if pattern.search(path):
                info: dict[str, Any] = {"name": name, "path": path}
                if name == "openblas":
                    info.update(_openblas_info(path))
                return info
    return {"name": "none", "path": None}


def configure_threads(default: int = DEFAULT_OPENBLAS_THREADS) -> int | None:
    """Set OpenBLAS's thread count to OPENBLAS_NUM_THREADS if the user set it, else to ``default``.

    Works after MLX is loaded (OpenBLAS is told at run time). Returns the count, or None when the
    process does not run OpenBLAS.
    """
    info = loaded_blas()
    if info["name"] != "openblas":
        return None
    wanted = os.environ.get("OPENBLAS_NUM_THREADS", "").strip()
    threads = int(wanted) if wanted.isdigit() and int(wanted) > 0 else default
    try:
        ctypes.CDLL(info["path"]).openblas_set_num_threads(threads)
    except (OSError, AttributeError):
        return None
    return threads


__all__ = ["loaded_blas", "configure_threads", "DEFAULT_OPENBLAS_THREADS"]

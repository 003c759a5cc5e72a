"""Which BLAS MLX's CPU matrix multiplies actually run on, for run.json, and its thread count.

On Linux the mlx-cpu wheel bundles a reference BLAS (mlx_cpu.libs/libblas-*.so, ~6 GFLOP/s);
`make setup` (scripts/setup_blas.sh) links that file to Debian's OpenBLAS (~15-30x faster sgemm;
benchmarks/blas.py measures it). What the
process really bound is the only reliable answer, so this asks the dynamic linker which file defines
the cblas_sgemm that MLX's library calls (dlsym + dladdr), after loading MLX.
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
    ("reference", re.compile(r"/mlx_cpu\.libs/libblas-")),  # the wheel's bundled reference BLAS (or its backup)
    ("reference", re.compile(r"/libblas\.so[.\d]*$")),  # a system reference libblas (libblas3)
)

# OPENBLAS_NUM_THREADS when the user has not set it. On 2 cores the tiny model's LoRA steps ran 5-15%
# faster on one thread than on two and generated as fast (small matrices: threading overhead), and one
# thread leaves the other core to a concurrent process. Big models gain from more: set the variable.
DEFAULT_OPENBLAS_THREADS = 1


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _libmlx_path() -> str | None:
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            path = line.split(maxsplit=5)[-1].strip()
            if os.path.basename(path).startswith("libmlx.so"):
                return path
    return None


def _cblas_provider() -> str | None:
    """The file that defines the cblas_sgemm MLX calls, found as the dynamic linker binds it.

    Global scope first (executable, LD_PRELOAD, RTLD_GLOBAL libraries), then libmlx's own dependencies;
    dladdr names the file, realpath follows setup_blas.sh's symlink. Other copies of OpenBLAS in the
    process (numpy bundles one) do not count: only the one MLX calls does.
    """
    libmlx = _libmlx_path()
    scopes = [ctypes.CDLL(None)] + ([ctypes.CDLL(libmlx, mode=os.RTLD_NOLOAD)] if libmlx else [])
    for scope in scopes:
        try:
            address = ctypes.cast(scope.cblas_sgemm, ctypes.c_void_p).value
        except AttributeError:
            continue
        info = _DlInfo()
        libc = ctypes.CDLL(None)
        dladdr = getattr(libc, "dladdr", None) or ctypes.CDLL("libdl.so.2").dladdr
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        if dladdr(address, ctypes.byref(info)) and info.dli_fname:
            return os.path.realpath(info.dli_fname.decode())
    return None


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
    """The BLAS of this process's MLX: {"name": openblas|reference|mkl|blis|accelerate|other|none, "path"}.

    Imports mlx.core first (a no-op when already imported) so the answer is about MLX's library.
    """
    import mlx.core  # noqa: F401

    if platform.system() == "Darwin":
        # MLX on macOS always links Apple's Accelerate framework.
        return {"name": "accelerate", "path": "/System/Library/Frameworks/Accelerate.framework"}
    if not os.path.exists("/proc/self/maps"):
        return {"name": "unknown", "path": None}
    path = _cblas_provider()
    if path is None:
        return {"name": "none", "path": None}  # e.g. a CUDA build with no CPU BLAS
    for name, pattern in _KINDS:
        if pattern.search(path):
            info: dict[str, Any] = {"name": name, "path": path}
            if name == "openblas":
                info.update(_openblas_info(path))
            return info
    return {"name": "other", "path": path}


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

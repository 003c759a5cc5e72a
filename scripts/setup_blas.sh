#!/usr/bin/env bash
# Make MLX's Linux CPU wheel use Debian's OpenBLAS instead of the reference BLAS it bundles.
#
#   bash scripts/setup_blas.sh .venv/bin/python      (make setup runs this)
#
# The mlx-cpu wheel links mlx_cpu.libs/libblas-<hash>.so.* (reference BLAS, ~8 GFLOP/s sgemm here);
# OpenBLAS does ~110 (1 thread) to ~230 (2 threads) GFLOP/s: tiny-model training steps run ~6x faster
# with the same losses (benchmarks/blas.py, tests/test_blas.py). The
# bundled file is kept as <name>.reference and replaced by a symlink to OpenBLAS's libblas.so.3.
# Idempotent. A no-op on macOS (Accelerate) and without mlx-cpu (CUDA). When OpenBLAS cannot be had
# (not root, no apt, apt fails) it prints one warning and leaves the bundled BLAS in place.
set -u
PY=${1:-.venv/bin/python}
PKG=libopenblas0-pthread

warn() { echo "setup_blas: warning: $*; MLX keeps its bundled reference BLAS (CPU training ~10x slower)" >&2; }
# Put the wheel's own file back (e.g. OpenBLAS was removed after an earlier setup linked to it).
restore() { [ -e "$backup" ] && [ -L "$bundled" ] && rm -f "$bundled" && cp -p "$backup" "$bundled"; }

[ "$(uname -s)" = Linux ] || exit 0

# The wheel's bundled libblas, found through pip's record of the mlx-cpu distribution.
bundled=$("$PY" - <<'EOF'
import importlib.metadata as md
try:
    files = md.distribution("mlx-cpu").files or []
except md.PackageNotFoundError:
    raise SystemExit(0)
for f in files:
    if f.parts[0] == "mlx_cpu.libs" and f.name.startswith("libblas"):
        print(f.locate())
        break
EOF
)
[ -n "$bundled" ] || exit 0  # no mlx-cpu: CUDA wheel or MLX not installed
backup="$bundled.reference"

# OpenBLAS's libblas.so.3 from the Debian package (not the alternatives link, which may point elsewhere).
openblas_lib() {
    command -v dpkg >/dev/null 2>&1 || return 0
    local f
    f=$(dpkg -L "$PKG" 2>/dev/null | grep -m1 '/openblas-pthread/libblas\.so\.3$')
    [ -n "$f" ] && [ -e "$f" ] && echo "$f"
    return 0
}

target=$(openblas_lib)
if [ -z "$target" ]; then
    if [ "$(id -u)" != 0 ]; then
        restore
        warn "$PKG is not installed and this is not root (run: sudo apt-get install $PKG, then make setup)"
        exit 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        restore
        warn "no apt-get to install $PKG"
        exit 0
    fi
    echo "setup_blas: installing $PKG (apt-get)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PKG"; } >/dev/null 2>&1; then
        restore
        warn "apt-get install $PKG failed"
        exit 0
    fi
    target=$(openblas_lib)
    [ -n "$target" ] || { restore; warn "$PKG installed but its libblas.so.3 was not found"; exit 0; }
fi

if [ -L "$bundled" ] && [ "$(readlink "$bundled")" = "$target" ]; then
    exit 0  # already linked
fi
[ -L "$bundled" ] || [ -e "$backup" ] || cp -p "$bundled" "$backup"
ln -sfn "$target" "$bundled"

# Check that MLX loads and multiplies with it; otherwise put the bundled file back.
if "$PY" -c "
import mlx.core as mx
a = mx.ones((64, 64))
assert float((a @ a).sum()) == 64.0 ** 3
assert any('openblas' in line for line in open('/proc/self/maps'))
" >/dev/null 2>&1; then
    echo "setup_blas: MLX now uses OpenBLAS ($target)"
else
    restore
    warn "MLX did not load with $target"
fi
exit 0

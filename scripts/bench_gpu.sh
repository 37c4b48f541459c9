#!/usr/bin/env bash
# Every benchmark on a CUDA machine, with mamba-ssm's fused kernels, installed from local files (no registry needed);
# writes bench/*_gpu.json and regenerates docs/benchmarks.md from all the JSON in bench/.
#
# Usage: scripts/bench_gpu.sh WHEELS_DIR [--no-install] [--quick] [--dry-run]
#
#   WHEELS_DIR    wheels / sdists of setup.py's `gpu` extra (mamba-ssm, causal-conv1d, onnxruntime-gpu) and of
#                 whatever else this machine lacks; nothing is fetched from a registry (pip --no-index).
#   --no-install  use what is installed (WHEELS_DIR may then be any folder, e.g. .)
#   --quick       one short run of each benchmark (small models), written as bench/*_gpu_quick.json; no document
#   --dry-run     print the plan (extra, installs, commands) and run nothing; works without a GPU
#
# Make WHEELS_DIR on a machine with registry access and the same Python version as this one, e.g.:
#   pip download -d wheels --no-deps --no-binary :all: mamba-ssm causal-conv1d   # sdists, built here
#   pip download -d wheels onnxruntime-gpu einops ninja packaging wheel setuptools
#   (and any of numpy scipy matplotlib transformers onnx librosa soundfile soxr that this machine lacks)
# mamba-ssm is built from its sdist against the installed torch with MAMBA_SKIP_CUDA_BUILD=TRUE (its Mamba-2 path
# is Triton only; the CUDA extension it skips is Mamba-1's selective scan) and MAMBA_FORCE_BUILD=TRUE (no attempt to
# download a prebuilt wheel). causal-conv1d compiles CUDA code: it is installed only where nvcc exists; without it
# the conv runs in PyTorch and the JSON's machine block says causal_conv1d: null.
#
# Environment: PYTHON (default python3), OUT (default <repo>/bench), THREADS (CPU threads, default: all cores).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$REPO/bench}
THREADS=${THREADS:-$(nproc 2>/dev/null || echo 8)}
INSTALL=1
QUICK=0
DRY=0
WHEELS=""

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

for arg in "$@"; do
  case "$arg" in
    --no-install) INSTALL=0 ;;
    --quick) QUICK=1 ;;
    --dry-run) DRY=1 ;;
    -h|--help) usage ;;
    -*) echo "bench_gpu.sh: unknown option $arg" >&2; usage ;;
    *) [ -z "$WHEELS" ] || { echo "bench_gpu.sh: one WHEELS_DIR only" >&2; usage; }; WHEELS=$arg ;;
  esac
done
[ -n "$WHEELS" ] || usage
if [ "$INSTALL" = 1 ] && [ "$DRY" = 0 ] && [ ! -d "$WHEELS" ]; then
  echo "bench_gpu.sh: wheel folder $WHEELS does not exist" >&2
  exit 2
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
log() { echo "[bench_gpu] $*"; }
warn() { echo "[bench_gpu] WARNING: $*" >&2; }
run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

# The `gpu` extra, read from setup.py so this script follows it.
EXTRA=$("$PYTHON" - "$REPO/setup.py" <<'EOF'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg == "extras_require":
        print(" ".join(ast.literal_eval(node.value)["gpu"]))
EOF
)
log "gpu extra of setup.py: $EXTRA"

if [ "$DRY" = 0 ]; then
  "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' || {
    echo "bench_gpu.sh: torch sees no CUDA device here (torch.cuda.is_available() is False)" >&2
    exit 2
  }
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; fi
fi

has() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }
pip_local() { run "$PYTHON" -m pip install --no-index --find-links "$WHEELS" "$@"; }

if [ "$INSTALL" = 1 ]; then
  # What the benchmarks import (module:package); installed from WHEELS_DIR only when missing.
  for pair in numpy:numpy scipy:scipy matplotlib:matplotlib transformers:transformers onnx:onnx \
              einops:einops ninja:ninja packaging:packaging wheel:wheel; do
    module=${pair%%:*} package=${pair#*:}
    if [ "$DRY" = 1 ] || ! has "$module"; then pip_local "$package" || warn "could not install $package from $WHEELS"; fi
  done
  for pair in librosa:librosa soundfile:soundfile soxr:soxr; do  # optional: the acoustic front end, the demo clip
    module=${pair%%:*} package=${pair#*:}
    if [ "$DRY" = 1 ] || ! has "$module"; then
      pip_local "$package" || warn "$package not installed: bench speech skips what needs it"
    fi
  done
  for package in $EXTRA; do
    case "$package" in
      mamba-ssm*|mamba_ssm*)
        MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE pip_local --no-build-isolation "$package" \
          || warn "mamba-ssm not installed: Mamba-2 runs its pure-PyTorch path on the GPU" ;;
      causal-conv1d*|causal_conv1d*)
        if command -v nvcc >/dev/null 2>&1 || [ "$DRY" = 1 ]; then
          CAUSAL_CONV1D_FORCE_BUILD=TRUE pip_local --no-build-isolation "$package" \
            || warn "causal-conv1d not installed: the Mamba-2 conv runs in PyTorch"
        else
          warn "no nvcc: causal-conv1d not built; the Mamba-2 conv runs in PyTorch"
        fi ;;
      *) pip_local "$package" || warn "$package not installed" ;;
    esac
  done
fi

if [ "$DRY" = 0 ]; then
  "$PYTHON" - <<'EOF'
import torch
from dimgestor_ros.model.mamba2 import fused_kernels_available
ok = fused_kernels_available("cuda")
print(f"[bench_gpu] mamba-ssm fused kernels: {'yes' if ok else 'NO (pure-PyTorch Mamba-2 on the GPU)'}")
try:
    import onnxruntime
    print(f"[bench_gpu] onnxruntime providers: {onnxruntime.get_available_providers()}")
except ImportError:
    print("[bench_gpu] onnxruntime: not installed")
EOF
fi

BENCH=("$PYTHON" -m dimgestor_ros.bench)
SUFFIX=_gpu
EXTRA_ARGS=(--device cuda --threads "$THREADS")
if [ "$QUICK" = 1 ]; then
  SUFFIX=_gpu_quick
  EXTRA_ARGS+=(--quick)
fi
[ "$DRY" = 1 ] || mkdir -p "$OUT"
failures=0
bench() {  # a benchmark that fails is reported and the others still run
  echo "+ $*"
  if [ "$DRY" = 0 ] && ! "$@"; then
    warn "failed: $*"
    failures=$((failures + 1))
  fi
}
bench "${BENCH[@]}" denoiser "${EXTRA_ARGS[@]}" --out "$OUT/denoiser$SUFFIX.json"
bench "${BENCH[@]}" denoiser "${EXTRA_ARGS[@]}" --dtype bfloat16 --out "$OUT/denoiser${SUFFIX}_bf16.json"
bench "${BENCH[@]}" per-hop "${EXTRA_ARGS[@]}" --out "$OUT/per_hop$SUFFIX.json"
bench "${BENCH[@]}" speech "${EXTRA_ARGS[@]}" --out "$OUT/speech$SUFFIX.json"
bench "${BENCH[@]}" streams "${EXTRA_ARGS[@]}" --out "$OUT/streams$SUFFIX.json"
if [ "$QUICK" = 0 ]; then
  shopt -s nullglob
  jsons=("$OUT"/*.json)
  bench "${BENCH[@]}" report --json "${jsons[@]}" --out "$REPO/docs/benchmarks.md"
fi
if [ "$failures" -gt 0 ]; then
  warn "$failures run(s) failed; the others wrote $OUT/*$SUFFIX*.json"
  exit 1
fi
log "done: $OUT/*$SUFFIX*.json"

#!/usr/bin/env bash
# The CUDA check of issue 26 (bench/gpu_check.py; bench/README.md, "GPU check").
#
#   bench/gpu_check.sh prepare     here, with network: gpu_data/ (Kodak, one photo, wheels)
#   bench/gpu_check.sh [OPTIONS]   on the GPU machine; results in $OUT (else out/gpu_check/)
#   bench/gpu_check.sh --cpu       a dry run on the CPU with tiny settings
#
# SAD_PYTHON names the interpreter to check and install into (default: python3; prepare
# uses .venv/bin/python). The run is bounded twice: every stage by its own timeout inside
# gpu_check.py, and the whole by `timeout` here, 60 s past gpu_check.py's --budget.
set -u
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
    shift
    exec "${SAD_PYTHON:-.venv/bin/python}" -m bench.gpu_check prepare "$@"
fi

PY=${SAD_PYTHON:-python3}
echo "== interpreter and packages before anything is installed"
for cmd in "$PY" python3 pip3 nvidia-smi git; do
    printf '%-12s %s\n' "$cmd" "$(command -v "$cmd" || echo 'not found')"
done
"$PY" -V 2>&1
"$PY" -m pip --version 2>&1 | head -1
ENABLE_TAICHI_HEADER_PRINT=False TI_SKIP_VERSION_CHECK=ON "$PY" -c \
    'import importlib.metadata as m, taichi; print("taichi", m.version("taichi"), "is installed")' \
    2>&1 | tail -1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2

budget=450
for arg in "$@"; do
    case $arg in --cpu) budget=900 ;; esac
done
prev=
for arg in "$@"; do
    [ "$prev" = --budget ] && budget=${arg%.*}
    case $arg in --budget=*) budget=${arg#--budget=}; budget=${budget%.*} ;; esac
    prev=$arg
done
echo "== bench/gpu_check.py (budget ${budget} s)"
exec timeout -k 30 $((budget + 60)) "$PY" -m bench.gpu_check "$@"

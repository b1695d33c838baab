#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with an NVIDIA GPU (under ten minutes on one GPU):
# the torch-CUDA and CuPy test sessions, then the Gv benchmark on torch CUDA and on CuPy.
#     bash bench/gpu.sh 2>&1 | tee gpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -m pip install -q nox
nox -s tests-torch tests-cupy -- -x -q
python -m venv .gpu-venv && . .gpu-venv/bin/activate
pip install -q ".[bench,test,cupy]"
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
python bench/gv.py --backend torch --device cuda --json bench/results/gv_cuda.json
python bench/gv.py --backend cupy --no-numpy --json bench/results/gv_cupy.json

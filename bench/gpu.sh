#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with an NVIDIA GPU: the torch-CUDA and CuPy test
# sessions, the Gv benchmark on torch CUDA and on CuPy, then the release's experiment, the demo at
# T = 200 on torch CUDA (float32, the release's settings), stopped by SIGTERM after DEMO_SECONDS
# (default 240; it checkpoints and prints its verdict, and `arrayhf resume runs/demo-T200`
# continues it). `python -m bench.tools.gpu_estimate` counts on a CPU what a CG step will cost there.
#     DEMO_SECONDS=240 bash bench/gpu.sh 2>&1 | tee gpu.log
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -m pip install -q nox
nox -s tests-torch tests-cupy -- -x -q
python -m venv .gpu-venv && . .gpu-venv/bin/activate
pip install -q ".[bench,test,cupy]"
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'"
python -m bench.micro.gv --backend torch --device cuda --json bench/results/gv_cuda.json
python -m bench.micro.gv --backend cupy --no-numpy --json bench/results/gv_cupy.json
python -m bench.tools.gpu_estimate --json bench/results/gpu_estimate.json
status=0
timeout --signal=TERM "${DEMO_SECONDS:-240}" arrayhf demo --T 200 --backend torch --device cuda \
    --dtype float32 --run-dir runs/demo-T200 --overwrite || status=$?
echo "demo at T = 200: exit status $status (124 or 130: stopped by the time limit)"
arrayhf info runs/demo-T200

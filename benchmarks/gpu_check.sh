#!/usr/bin/env bash
# One short check for a CUDA machine, run from the repository root: install, the tests that need CUDA,
# the engine's throughput beside the card's own matmul probe, and the end-to-end benchmark on the
# seed's config. Prints what docs/performance.md quotes. About five minutes on a recent card.
#
#   bash benchmarks/gpu_check.sh            # uses python3; PY=/path/to/python to choose another
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}

# Install: torch as the machine has it (a CUDA build; never replaced here), weightzoo and its other
# dependencies without touching torch.
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda); sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo "gpu_check: torch sees no CUDA device here" >&2; exit 1; }
"$PY" -m pip install --quiet --no-deps -e . 2>/dev/null || true
"$PY" -m pip install --quiet numpy orjson 'pyarrow>=14' tqdm tensorboard huggingface_hub 'pydantic>=2.6' pyyaml \
  safetensors filelock pytest hypothesis 2>/dev/null || true
export PYTHONPATH="$PWD/src:$PWD/benchmarks:${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

echo "== tests that need CUDA (and the device-generic ones)"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_devices.py

echo "== engine: models/s and GFLOP/s beside the card's batched-matmul probe"
"$PY" benchmarks/train_throughput.py --device cuda --examples 4096 --cohort 4096 --naive 8 --threads 1

echo "== end to end on the seed's config, 500 accepted"
"$PY" benchmarks/pipeline_throughput.py --accepted 500 --workers 4 --device cuda
nvidia-smi --query-gpu=memory.used --format=csv || true

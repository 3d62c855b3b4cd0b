#!/usr/bin/env bash
# The GPU checks in one go, for a machine with an NVIDIA GPU, CuPy and PyTorch (CI has none):
#   1. tests/test_cupy_backend.py: every op, the three P3 nets, optimisers, augmentation, resume and the
#      P3 script on CuPy against NumPy;
#   2. bench/train_step.py --backend cupy: scratchnet-cupy vs PyTorch CUDA per training step;
#   3. one epoch of each P3 net through problems/p3_small_cnn.py on a CIFAR-sized generated dataset
#      (50,000 + 10,000 random images: the real pipeline's epoch time and img/s, not an accuracy).
# Usage: bench/gpu_checks.sh OUT_DIR      (logs and JSONs go to OUT_DIR; run from the repository root)
# Knobs: SECTIONS (default "1 2 3"), ROUNDS (bench rounds, 3), RUNS ("backend model,..." for part 3),
# PER_BATCH (images per generated pickle batch, 10000).
set -uo pipefail
[[ $# == 1 ]] || { echo "usage: bench/gpu_checks.sh OUT_DIR" >&2; exit 2; }
out="$1"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
export SCRATCHNET_DATA="${SCRATCHNET_DATA:-/nonexistent}"   # the CuPy tests make their own data
py="${PYTHON:-python3}"

nvidia-smi -L || true
"$py" -c "import numpy, torch; print('numpy', numpy.__version__, 'torch', torch.__version__)"
"$py" -c "import cupy; print('cupy', cupy.__version__)" || true

sections="${SECTIONS:-1 2 3}"
failed=""
if [[ $sections == *1* ]]; then
echo "== 1. CuPy tests"
timeout 240 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_cupy_backend.py 2>&1 | tee "$out/pytest_cupy.log"
[[ ${PIPESTATUS[0]} == 0 ]] || failed+=" tests"

fi
if [[ $sections == *2* ]]; then
echo "== 2. training-step benchmark"
timeout 240 "$py" bench/train_step.py --backend cupy --rounds "${ROUNDS:-3}" --out "$out/train_step_cupy.json" 2>&1 \
    | tee "$out/bench_cupy.log"
[[ ${PIPESTATUS[0]} == 0 ]] || failed+=" bench"
fi

finish() { [[ -z $failed ]] || { echo "gpu_checks: failed:$failed" >&2; exit 1; }; exit 0; }
[[ $sections == *3* ]] || finish
echo "== 3. one epoch of each P3 net on CIFAR-sized generated data"
data="$(mktemp -d)"
"$py" -c "import sys, pathlib; sys.path.insert(0, 'tests'); from cifar_helpers import make_pickles; \
make_pickles(pathlib.Path('$data'), n_per_batch=${PER_BATCH:-10000}, n_test=${PER_BATCH:-10000})"
IFS=, read -ra runs <<< "${RUNS:-cupy small,cupy small_bn,torch small,torch small_bn,cupy better}"
for run in "${runs[@]}"; do
    set -- $run
    timeout 120 "$py" problems/p3_small_cnn.py --backend "$1" --model "$2" --epochs 1 --data-dir "$data" \
        --out "$data/runs/$1_$2" --no-progress 2>&1 | tail -n 2
    [[ ${PIPESTATUS[0]} == 0 ]] || failed+=" epoch($1 $2)"
done
"$py" - "$data/runs" "$out/epochs.json" <<'EOF'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/results.json")):
    r = json.loads(f.read_text())
    rows.append({k: r.get(k) for k in ("model", "backend", "device", "epoch_seconds", "images_per_second",
                                       "hyperparameters", "n_train", "n_test", "command")})
    print(f"{f.parent.name}: device {r.get('device')}, {r['epoch_seconds'][0]:.1f} s/epoch, "
          f"{r['images_per_second'][0]:.0f} img/s (training), batch {r['hyperparameters']['batch_size']}")
pathlib.Path(sys.argv[2]).write_text(json.dumps(rows, indent=2) + "\n")
EOF
rm -rf "$data"
finish

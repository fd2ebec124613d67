#!/usr/bin/env bash
# The checks to run on a machine with a CUDA GPU, in one go (CI has none):
#   1. the tests marked `gpu` (CUDA host against PEFT on CUDA, bfloat16 and float32);
#   2. the batch-invariance and residency tests with their models on CUDA in float32
#      (COMPOSER_DEVICE=cuda; the PEFT-reference tests keep their references on the CPU);
#   3. the engine benches on CUDA (bfloat16): dispatch, mixture, mixed_batch, continuous (full sizes) and
#      residency (--smoke: 1,000 adapters take longer to make than a short lease allows).
# bench/serving.py needs Ray and is not run here. Results: $OUT (default bench/results/gpu).
#
#     bash bench/gpu.sh            # COMPOSER_TEST_OCEAN=DIR reuses a built test ocean; SMOKE=1: tiny benches;
#                                  TESTS_ONLY=1: steps 1-2
set -u
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COMPOSER_QUIET=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
step() { echo "== $1 ($(date +%T))"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"

step "tests marked gpu"
timeout 300 $PY -m pytest -q -p no:cacheprovider -m gpu -rs --tb=short tests/composer_tests/host/test_dtype.py \
  > "$OUT/tests-gpu.txt" 2>&1
tail -5 "$OUT/tests-gpu.txt"

step "batch invariance and residency on CUDA (float32): the host against itself, no CPU reference"
COMPOSER_DEVICE=cuda COMPOSER_DTYPE=float32 timeout 300 $PY -m pytest -q -p no:cacheprovider --tb=short \
  tests/composer_tests/test_batch_invariance.py tests/composer_tests/test_residency.py \
  > "$OUT/tests-cuda-fp32.txt" 2>&1
tail -5 "$OUT/tests-cuda-fp32.txt"

[ -n "${TESTS_ONLY:-}" ] && { step "done (TESTS_ONLY: no benches)"; exit 0; }
while read -r name flags; do
  step "bench/$name.py $flags on CUDA"
  # shellcheck disable=SC2086 # flags: zero or more words
  timeout 300 $PY bench/$name.py $flags ${SMOKE:+--smoke} --device cuda --out "$OUT" 2>&1 | tail -12
done <<'BENCHES'
dispatch
mixture
mixed_batch
continuous
residency --smoke
BENCHES
step "done"

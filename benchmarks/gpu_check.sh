#!/usr/bin/env bash
# The one prepared script to run when a GPU machine is lent: every CUDA path of the course, in at most
# 5 minutes (the section limits add up to 300 s; the machine's start comes on top), each section under its
# own time limit, each result appended to $OUT/results.txt as soon as it exists (a section that overruns is cut and the next runs).
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh          # from the repository root
#
# Sections: the machine; training img/s at 128 px / base 64 (the seed's loop as written, ours fp32,
# ours bf16 + channels_last); a short TrainConfig.cuda_full() run through the command line and its
# sample grid; DDIM-50 vs DDPM sampling time; the one-call fine-tune (teacher pairs, the feature
# discriminator, one-call sampling) on CUDA; torchrun with NCCL on one GPU (a 1-rank DDP run: two
# ranks need two GPUs, which this check cannot have). Files in $OUT: results.txt, log.txt, grid.png.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_out}
WORK=$(mktemp -d /tmp/gpu_check.XXXX)
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
TORCHRUN=${TORCHRUN:-torchrun}
results="$OUT/results.txt"
: > "$results"

section() {   # section SECONDS TITLE COMMAND...: run with a time limit, log everything, keep the tail
  local limit=$1 title=$2; shift 2
  echo "== $title (limit ${limit}s)" | tee -a "$results" >> "$OUT/log.txt"
  local start=$SECONDS
  timeout --kill-after=5 "$limit" "$@" > "$WORK/section.txt" 2>&1
  local status=$?
  cat "$WORK/section.txt" >> "$OUT/log.txt"
  grep -v -e 'it/s' -e 'step/s' -e '^\s*$' "$WORK/section.txt" | tail -n 12 >> "$results"
  echo "-- exit $status after $((SECONDS - start)) s$([ $status = 124 ] && echo ': TIME LIMIT')" | tee -a "$results" >> "$OUT/log.txt"
}

section 15 "machine" bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; \
  $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"bf16\", torch.cuda.is_bf16_supported())'"

section 50 "training img/s, 128 px, base 64, batch 32: seed's loop vs ours fp32 vs ours bf16" \
  $PY benchmarks/bench_train.py --device cuda --steps 10 --warmup 3

section 70 "TrainConfig.cuda_full() through the CLI: 200 steps of 128 px phantoms" \
  $PY -m diffgan_lib train --data phantoms --device cuda --max-steps 200 --batch-size 32 --n-images 6400 \
  --out "$WORK/cuda_full"
section 30 "sample the cuda_full run: DDIM-50, 16 images" \
  $PY -m diffgan_lib sample --checkpoint "$WORK/cuda_full/final_model.pth" -n 16 --device cuda --out "$WORK/samples"
cp "$WORK/samples/grid.png" "$OUT/grid.png" 2>/dev/null

section 35 "sampling time, 128 px, base 64, 8 images: DDPM-1000 vs DDIM-50" \
  $PY benchmarks/bench_sampling.py --device cuda

section 40 "one-call fine-tune of the cuda_full run on CUDA: 20 steps, 64 teacher pairs, then one-call sampling" \
  bash -c "$PY -m diffgan_lib fewstep --init '$WORK/cuda_full/final_model.pth' --data phantoms --levels 1 \
  --max-steps 20 --batch-size 16 --n-images 640 --pairs 64 --device cuda --out '$WORK/onecall' && \
  $PY -m diffgan_lib sample --checkpoint '$WORK/onecall/final_model.pth' -n 16 --device cuda --out '$WORK/oc_samples'"

section 50 "torchrun + NCCL, one GPU (a 1-rank DDP run; 2 ranks need 2 GPUs)" \
  $TORCHRUN --standalone --nproc_per_node 1 -m diffgan_lib train --data phantoms --device cuda --max-steps 20 \
  --batch-size 16 --n-images 640 --out "$WORK/nccl"
section 10 "the NCCL run's checkpoint" \
  $PY -c "from diffgan_lib.engine import read_checkpoint as r; c = r('$WORK/nccl/final_model.pth'); print('steps', c['step'], 'data', c['data'], 'precision', c.get('precision'))"

echo "done; results in $results" | tee -a "$OUT/log.txt"

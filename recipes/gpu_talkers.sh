#!/usr/bin/env bash
# One GPU lease, three Talkers trained side by side from a packed code cache (codes are tiny, so a
# 7.8 h corpus travels as ~10 MB), then fp16 weights, logs and a generation-speed figure under $OUT.
# Needs only torch/accelerate/safetensors/typer/tqdm on the GPU box (PYTHONPATH=src, no audio libs).
#   usage: recipes/gpu_talkers.sh CODES_TAR MINUTES   (writes to ${OUT:-/tmp/out})
set -u
CODES_TAR=${1:?packed code cache (tar.gz of one cache folder)}
MINUTES=${2:-7}
OUT=${OUT:-/tmp/out}
RUNS=/tmp/runs
mkdir -p /tmp/codes "$RUNS" "$OUT"
tar xzf "$CODES_TAR" -C /tmp/codes || exit 1
CODES=$(dirname "$(ls /tmp/codes/*/cache.json | head -1)")
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for name in talker_gpu talker_gpu_large talker_prefix_gpu; do
  python3 -m codectts.cli train talker --config "configs/$name.json" --data-path "$CODES" \
    --out-dir "$RUNS/$name" --max-minutes "$MINUTES" > "$RUNS/$name.log" 2>&1 &
done
wait
for name in talker_gpu talker_gpu_large talker_prefix_gpu; do
  grep -v "step/s\]$" "$RUNS/$name.log" | tail -5
done
timeout 60 python3 benchmarks/talker_gen_speed.py --talker "$RUNS/talker_gpu_large/best" --codes "$CODES" \
  --n 10 --out "$RUNS/talker_gpu_large/speed_cuda.json"
python3 - "$RUNS" "$OUT" <<'PY'
import sys, tarfile, pathlib
from codectts.models.talker_io import load_talker, save_talker
runs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for run in sorted(p for p in runs.iterdir() if p.is_dir()):
    if (run / "best").exists():
        save_talker(run / "best_fp16", load_talker(run / "best"), half=True)
with tarfile.open(out / "logs.tar.gz", "w:gz") as t:
    for f in runs.glob("*.log"):
        t.add(f, arcname=f.name)
    for f in runs.glob("*/log.jsonl"):
        t.add(f, arcname=f"{f.parent.name}/log.jsonl")
    for f in runs.glob("*/speed_cuda.json"):
        t.add(f, arcname=f"{f.parent.name}/speed_cuda.json")
PY
for name in talker_gpu talker_gpu_large talker_prefix_gpu; do
  [ -d "$RUNS/$name/best_fp16" ] && tar cf - -C "$RUNS/$name" best_fp16 | split -b 15M - "$OUT/$name.tar."
done
ls -la "$OUT"

#!/usr/bin/env bash
# One GPU lease, Talkers trained side by side from a packed code cache (codes are tiny: a 7.8 h corpus
# travels as 5 MB), then fp16 weights (split in 15 MB pieces), logs and the first run's generation speed
# under $OUT. Needs only torch/accelerate/safetensors/typer/tqdm there (PYTHONPATH=src, no audio libs).
#   usage: recipes/gpu_talkers.sh CODES_TAR MINUTES [CONFIG_NAME ...]   (configs/NAME.json; $OUT or /tmp/out)
#   e.g.   recipes/gpu_talkers.sh .gpu/joe10-codes.tar.gz 6.5 talker_gpu talker_gpu_large talker_prefix_gpu
set -u
CODES_TAR=${1:?packed code cache (tar.gz of one cache folder)}
MINUTES=${2:-7}
shift 2 || shift $#
NAMES=("${@:-talker_gpu}")
PICK=${PICK:-best}  # which export comes back: best (lowest dev cross-entropy) or last (end of the schedule)
OUT=${OUT:-/tmp/out}
RUNS=/tmp/runs
mkdir -p /tmp/codes "$RUNS" "$OUT"
tar xzf "$CODES_TAR" -C /tmp/codes || exit 1
CODES=$(dirname "$(ls /tmp/codes/*/cache.json | head -1)")
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for name in "${NAMES[@]}"; do
  python3 -m codectts.cli train talker --config "configs/$name.json" --data-path "$CODES" \
    --out-dir "$RUNS/$name" --max-minutes "$MINUTES" > "$RUNS/$name.log" 2>&1 &
done
wait
for name in "${NAMES[@]}"; do
  grep -v "step/s\]$" "$RUNS/$name.log" | tail -5
done
timeout 60 python3 benchmarks/talker_gen_speed.py --talker "$RUNS/${NAMES[0]}/best" --codes "$CODES" \
  --n 10 --out "$RUNS/${NAMES[0]}/speed_cuda.json"
python3 - "$RUNS" "$OUT" "$PICK" <<'PY'
import sys, tarfile, pathlib
from codectts.models.talker_io import load_talker, save_talker
runs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for run in sorted(p for p in runs.iterdir() if p.is_dir()):
    if (run / sys.argv[3]).exists():
        save_talker(run / "fp16", load_talker(run / sys.argv[3]), half=True)
with tarfile.open(out / "logs.tar.gz", "w:gz") as t:
    for f in runs.glob("*.log"):
        t.add(f, arcname=f.name)
    for f in runs.glob("*/log.jsonl"):
        t.add(f, arcname=f"{f.parent.name}/log.jsonl")
    for f in runs.glob("*/speed_cuda.json"):
        t.add(f, arcname=f"{f.parent.name}/speed_cuda.json")
PY
for name in "${NAMES[@]}"; do
  [ -d "$RUNS/$name/fp16" ] && tar cf - -C "$RUNS/$name" fp16 | split -b 15M - "$OUT/$name.tar."
done
ls -la "$OUT"

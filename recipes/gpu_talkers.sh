#!/usr/bin/env bash
# One GPU lease, Talkers trained side by side from a packed code cache (codes are tiny: a 7.8 h corpus
# travels as 5 MB), then fp16 weights (split in 15 MB pieces), logs and the first run's generation speed
# under $OUT. Needs only torch/accelerate/safetensors/typer/tqdm there (PYTHONPATH=src, no audio libs).
#   usage: recipes/gpu_talkers.sh CODES_TAR MINUTES [CONFIG ...]   (configs/NAME.json or a .json path;
#          writes to $OUT or /tmp/out; $PYTHON, default python3, runs the trainers)
#   e.g.   recipes/gpu_talkers.sh .gpu/joe10-codes.tar.gz 6.5 talker_gpu talker_gpu_large talker_prefix_gpu
set -u
CODES_TAR=${1:?packed code cache (tar.gz of one cache folder)}
MINUTES=${2:-7}
shift 2 || shift $#
NAMES=("${@:-talker_gpu}")
PYTHON=${PYTHON:-python3}
PICK=${PICK:-best}  # which export comes back: best (lowest dev cross-entropy) or last (end of the schedule)
OUT=${OUT:-/tmp/out}
WORK=$(mktemp -d)
RUNS=$WORK/runs
mkdir -p "$WORK/codes" "$RUNS" "$OUT"
tar xzf "$CODES_TAR" -C "$WORK/codes" || exit 1
CODES=$(dirname "$(ls "$WORK"/codes/*/cache.json | head -1)")
export PYTHONPATH=src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
config_of() { case "$1" in *.json) echo "$1" ;; *) echo "configs/$1.json" ;; esac; }
run_of() { basename "$1" .json; }
for c in "${NAMES[@]}"; do
  name=$(run_of "$c")
  $PYTHON -m codectts.cli train talker --config "$(config_of "$c")" --codes "$CODES" \
    --out "$RUNS/$name" --max-minutes "$MINUTES" > "$RUNS/$name.log" 2>&1 &
done
wait
for c in "${NAMES[@]}"; do
  name=$(run_of "$c")
  grep -v "step/s\]$" "$RUNS/$name.log" | tail -5
done
FIRST=$(run_of "${NAMES[0]}")
timeout 60 $PYTHON benchmarks/talker_gen_speed.py --talker "$RUNS/$FIRST/best" --codes "$CODES" \
  --n 10 --out "$RUNS/$FIRST/speed.json"
$PYTHON - "$RUNS" "$OUT" "$PICK" <<'PY'
import sys, tarfile, pathlib
from codectts.models.talker import Talker
runs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for run in sorted(p for p in runs.iterdir() if p.is_dir()):
    if (run / sys.argv[3]).exists():
        Talker.load(run / sys.argv[3]).save(run / "fp16", half=True)
with tarfile.open(out / "logs.tar.gz", "w:gz") as t:
    for f in runs.glob("*.log"):
        t.add(f, arcname=f.name)
    for f in runs.glob("*/log.jsonl"):
        t.add(f, arcname=f"{f.parent.name}/log.jsonl")
    for f in runs.glob("*/speed.json"):
        t.add(f, arcname=f"{f.parent.name}/speed.json")
PY
for c in "${NAMES[@]}"; do
  name=$(run_of "$c")
  [ -d "$RUNS/$name/fp16" ] && tar cf - -C "$RUNS/$name" fp16 | split -b 15M - "$OUT/$name.tar."
done
ls -la "$OUT"
rm -rf "$WORK"

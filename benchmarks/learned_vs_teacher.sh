#!/bin/bash
# Issue 16 item 3: an aligned Talker trained on learned durations against one trained on the teacher's,
# same data, same start, same steps (docs/aligner.md). Usage, after benchmarks/aligner_accuracy.py
# wrote learned durations into WORK (a copy of joe's manifests; planted mismatches excluded there):
#   benchmarks/learned_vs_teacher.sh data/joe WORK data/joe-codes runs 150
# data/joe-codes: joe's code cache from the shipped codec (the teacher's durations).
set -eu
JOE=$1; WORK=$2; TEACHER_CODES=$3; R=$4; STEPS=${5:-150}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ct() { nice -n 10 codectts "$@"; }
# learned: same audio, same codec, so copy the codes and let `codes extract` re-time the learned durations
mkdir -p "$R/joe-learned-codes" && cp -r "$TEACHER_CODES/codes" "$R/joe-learned-codes/"
ct codes extract --codec src/codectts/voices/joe/codec --data "$WORK" --out "$R/joe-learned-codes"
# teacher: the same utterances (those align kept)
mkdir -p "$R/joe-teacher-codes" && cp "$TEACHER_CODES/cache.json" "$TEACHER_CODES/dev.jsonl" "$R/joe-teacher-codes/"
ln -sfn "$(realpath "$TEACHER_CODES/codes")" "$R/joe-teacher-codes/codes"
python - "$WORK/manifest.jsonl" "$TEACHER_CODES/index.jsonl" "$R/joe-teacher-codes/index.jsonl" <<'PY'
import json, sys
keep = {json.loads(line)["id"] for line in open(sys.argv[1])}
lines = [line for line in open(sys.argv[2]) if json.loads(line)["id"] in keep]
open(sys.argv[3], "w").writelines(lines)
PY
for kind in teacher learned; do
  ct train talker --config configs/talker.json --codes "$R/joe-$kind-codes" --out "$R/joe-$kind-ft" \
      --init-from src/codectts/voices/joe/talker --lr 5e-4 --max-steps "$STEPS" --eval-every 100000 --threads 1
  # one length source for both (joe's duration model): the comparison is of the Talkers
  ct make-voice --name "joe-$kind" --out "$R/joe-$kind-voice" --talker "$R/joe-$kind-ft/last" \
      --codec src/codectts/voices/joe/codec --duration src/codectts/voices/joe/duration --temperature 0.5 \
      --context-frames 128 --context-phonemes 64
  ct eval tts --voice "$R/joe-$kind-voice" --set sentences --limit 50 --seeds 0 --no-dnsmos --out "$R/tts_joe_$kind.json"
done

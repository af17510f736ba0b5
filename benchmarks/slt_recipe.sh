#!/bin/bash
# The README's "Train your own voice" recipe on a Festival voice (docs/aligner.md), one step at a time,
# one torch thread, with each step's wall time appended to $OUT/steps.tsv. Usage:
#   benchmarks/slt_recipe.sh /work/corpora /work/runs
# Then the Festival ground truth: python benchmarks/festival_boundaries.py --lj $C/slt-lj --data $C/slt
set -eu
C=${1:-data}; R=${2:-runs}
OUT=$R/slt-logs; mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ct() { nice -n 10 codectts "$@"; }
step() { name=$1; shift; t0=$(date +%s); "$@" > "$OUT/$name.log" 2>&1; echo -e "$name\t$(( $(date +%s) - t0 ))" >> "$OUT/steps.tsv"; }
step festival ct corpus festival --voice cmu_us_slt_arctic_hts --hours 1 --seed 0 --out "$C/slt-lj"
step import ct corpus import --ljspeech "$C/slt-lj" --out "$C/slt"
step align ct align --data "$C/slt" --max-minutes 8 --threads 1
step codes ct codes extract --codec src/codectts/voices/joe/codec --data "$C/slt" --out "$C/slt-codes"
step duration ct train duration --codes "$C/slt-codes" --out "$R/slt-duration" --dim 128 --max-minutes 8 --threads 1
step talker ct train talker --config configs/talker.json --codes "$C/slt-codes" --out "$R/slt-talker" \
    --init-from src/codectts/voices/joe/talker --lr 5e-4 --max-minutes 30 --threads 1
step voice ct make-voice --name slt --out "$R/slt-voice" --talker "$R/slt-talker/best" \
    --codec src/codectts/voices/joe/codec --duration "$R/slt-duration/best" --temperature 0.5 \
    --context-frames 128 --context-phonemes 64
python -c "import json,sys; [print(json.loads(l)['text']) for l in open(sys.argv[1])]" "$C/slt/dev.jsonl" > "$OUT/dev.txt"
step eval_tts ct eval tts --voice "$R/slt-voice" --texts "$OUT/dev.txt" --seeds 0,1 --no-dnsmos --out "$OUT/tts_dev.json"
# the source's own WER (reference rows) and its round trip through joe's codec + Griffin-Lim
step roundtrip ct eval roundtrip --voice joe --manifest "$C/slt" --split dev --no-dnsmos --out "$OUT/roundtrip"

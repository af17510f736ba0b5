#!/bin/bash
# The README's "Train your own voice" recipe on a Festival voice (docs/aligner.md), one step at a time,
# with each step's wall time appended to $R/slt-logs/steps.tsv. Usage:
#   benchmarks/slt_recipe.sh /work/corpora /work/runs
# Version 2 (the shipped `slt` voice): 2.5 h of Festival slt; the aligner trained on the first hour is
# applied to all of it; the default voice's codec is fine-tuned on slt (encoder, codebooks and decoder)
# and its Talker is the starting point. Two training jobs share the 2 cores where the steps allow it.
# Then the Festival ground truth: python benchmarks/festival_boundaries.py --lj $C/slt-lj --data $C/slt
set -eu
C=${1:-data}; R=${2:-runs}
OUT=$R/slt-logs; mkdir -p "$OUT"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
J=src/codectts/voices/joe
ct() { codectts "$@"; }
step() { name=$1; shift; t0=$(date +%s); "$@" > "$OUT/$name.log" 2>&1; echo -e "$name\t$(( $(date +%s) - t0 ))" >> "$OUT/steps.tsv"; }
# 1 h, its import and an aligner trained on it (version 1 of this recipe stopped its corpus here)
step festival1 ct corpus festival --voice cmu_us_slt_arctic_hts --hours 1 --seed 0 --workers 2 --out "$C/slt-lj"
step import1 ct corpus import --ljspeech "$C/slt-lj" --out "$C/slt"
step align1 ct align --data "$C/slt" --max-minutes 8 --threads 1
# 2.5 h: the same sentence order continued (the first hour is kept), aligned by that aligner
cp -r "$C/slt-lj" "$C/slt2-lj"
step festival ct corpus festival --voice cmu_us_slt_arctic_hts --hours 2.5 --seed 0 --workers 2 --out "$C/slt2-lj"
step import ct corpus import --ljspeech "$C/slt2-lj" --out "$C/slt2"
step align ct align --data "$C/slt2" --aligner "$C/slt/aligner" --threads 2
# the codec (fine-tuned from joe's) and the duration model (any 21.5 Hz cache serves it) side by side
step codes_joe ct codes extract --codec $J/codec --data "$C/slt2" --out "$C/slt2-joecodes"
step duration ct train duration --codes "$C/slt2-joecodes" --out "$R/slt2-duration" --dim 128 --max-minutes 20 \
    --threads 1 --no-progress &
step codec ct train codec --data "$C/slt2" --init $J/codec --spectral-weight 1.0 --lr 5e-4 --max-steps 1200 \
    --eval-every 300 --save-every 300 --threads 1 --no-progress --out "$R/codec-slt"
wait
step codes ct codes extract --codec "$R/codec-slt/best" --data "$C/slt2" --out "$C/slt2-codes"
step talker ct train talker --config configs/talker_finetune.json --codes "$C/slt2-codes" --out "$R/slt2-talker" \
    --init-from $J/talker --threads 1 --no-progress
step voice ct make-voice --name slt --out "$R/slt-voice2" --talker "$R/slt2-talker/best" \
    --codec "$R/codec-slt/best" --duration "$R/slt2-duration/best" --vocoder griffinlim --temperature 0.5 \
    --context-frames 128 --context-phonemes 64 --model-card src/codectts/voices/slt/MODEL_CARD.md
python -c "import json,sys; [print(json.loads(l)['text']) for l in open(sys.argv[1])]" "$C/slt2/dev.jsonl" \
    > "$OUT/dev.txt"
step eval_tts ct eval tts --voice "$R/slt-voice2" --texts "$OUT/dev.txt" --seeds 0,1,2 --out "$OUT/tts_dev.json"
# the source's own WER (reference rows) and its round trip through the slt codec + Griffin-Lim
step roundtrip ct eval roundtrip --codec "$R/codec-slt/best" --vocoder griffinlim --manifest "$C/slt2" \
    --split dev --out "$OUT/roundtrip"

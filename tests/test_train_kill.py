"""A real training run killed with SIGKILL after a checkpoint, then `--resume`: it continues from the last
checkpoint with the same config, no checkpoint is lost and the log has each step once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from codectts.data.codecache import CacheEntry, write_cache_meta, write_codes, write_index
from codectts.text import PhonemeTokenizer

SRC = str(Path(__file__).resolve().parent.parent / "src")
TEXTS = ["the cat sat", "a dog ran home", "birds sing", "rain falls", "we walk", "the sun is warm", "cold wind",
         "she reads"]
MAX_STEPS = 200


def tiny_cache(root: Path) -> Path:
    rng = np.random.default_rng(0)
    write_cache_meta(root, {"type": "synthetic-test"}, 2, 16, 20.0, 16000, "test")
    splits: dict[str, list] = {"train": [], "dev": []}
    for i, text in enumerate(TEXTS):
        phonemes = ["^", *PhonemeTokenizer().units(text), "$"]
        durs = rng.integers(1, 4, size=len(phonemes)).tolist()
        rel = write_codes(root, f"u{i}", rng.integers(0, 16, size=(2, sum(durs))), 16)
        splits["dev" if i < 2 else "train"].append(CacheEntry(id=f"u{i}", text=text, n_frames=sum(durs), file=rel,
                                                              speaker="0", phonemes=phonemes, durations=durs))
    for split, entries in splits.items():
        write_index(root, entries, split=split)
    return root


def steps_saved(run: Path) -> list[int]:
    ck = run / "checkpoints"
    return sorted(int(p.name[5:]) for p in ck.glob("step_*") if (p / "state.pt").exists()) if ck.exists() else []


def test_sigkill_then_resume(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "codectts.cli", "train", "duration", "--codes", str(tiny_cache(tmp_path / "codes")),
           "--out", str(run), "--dim", "16", "--n-layers", "1", "--batch-size", "2", "--max-steps", str(MAX_STEPS),
           "--save-every", "10", "--eval-every", "10", "--log-every", "1", "--keep-last", "2", "--threads", "1",
           "--no-progress"]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 60
    while len(steps_saved(run)) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(first.pid, signal.SIGKILL)  # the whole group: no helper process may keep stderr open
    _, err = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, err.decode()[-2000:]  # killed mid-run, not finished
    saved = steps_saved(run)
    assert saved and saved[-1] < MAX_STEPS
    last = run / "checkpoints" / f"step_{saved[-1]:07d}"
    config = json.loads((last / "run.json").read_text())

    second = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from {last} (step {saved[-1]}," in second.stderr
    assert steps_saved(run)[-1] == MAX_STEPS
    assert json.loads((run / "checkpoints" / f"step_{MAX_STEPS:07d}" / "run.json").read_text()) == config
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(1, MAX_STEPS + 1))
    evals = [r["step"] for r in log if r["kind"] == "eval"]
    assert evals == sorted(set(evals)) and evals[-1] == MAX_STEPS
    assert not [p.name for p in run.rglob(".*")]  # no temp or .old leftovers

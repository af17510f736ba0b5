"""The speed benchmark runs end to end on one sentence with the teacher only and writes valid JSON."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_speed_teacher_one_sentence(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_speed.py"), "--teacher-only", "--sentences", "1",
                    "--warmup", "0", "--out", str(out)], check=True, capture_output=True, timeout=120)
    data = json.loads(out.read_text())
    assert data["n_texts"] == 1 and data["machine"]["cpu_count"] >= 1 and "torch_threads" in data["machine"]
    (teacher,) = data["systems"]
    assert teacher["name"] == "piper-joe-medium" and teacher["audio_s"] > 0.5
    assert 0 < teacher["rtf"] < 10 and 0 < teacher["ttfc_median_s"] <= teacher["synth_s"] * 10

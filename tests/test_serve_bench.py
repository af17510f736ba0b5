"""The load benchmark runs end to end (against the tone double, for one second) and reports sanely."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_server.py"


@pytest.mark.slow
def test_bench_server_reports_json_with_no_failures_below_the_limit(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--double", "--clients", "2", "--max-concurrent", "2",
                           "--seconds", "1", "--stream", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # this checkout's code, children too
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["requests_ok"] > 0 and report["failures"] == 0 and report["rejected_429"] == 0
    assert 0 < report["first_audio_p50_s"] <= report["latency_p50_s"] <= report["latency_p95_s"]
    assert report["rss_start_mb"] > 0 and report["rss_end_mb"] > 0

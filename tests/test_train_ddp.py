"""The shared loop in two CPU processes (gloo), launched as torchrun would: each rank trains on its own
half of every epoch, weights stay identical, metrics are averaged, rank 0 alone writes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_STEPS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(240)
def test_two_processes_share_the_epoch_and_agree(tmp_path):
    run, port = tmp_path / "run", free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "RANK": str(rank),
               "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "tests" / "ddp_worker.py"), str(run),
                                       str(MAX_STEPS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        outs = [p.communicate(timeout=200)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    # epoch 0: rank 0 the even batches, rank 1 the odd ones (5 steps), then the first 3 of epoch 1's halves
    assert ranks[0]["seen"] == [[0, i] for i in (0, 2, 4, 6, 8)] + [[1, i] for i in (0, 2, 4)]
    assert ranks[1]["seen"] == [[0, i] for i in (1, 3, 5, 7, 9)] + [[1, i] for i in (1, 3, 5)]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # gradients were averaged: one model
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(1, MAX_STEPS + 1))  # rank 0 writes once
    assert all(r["rank"] == 0.5 for r in log if r["kind"] == "train")  # averaged over the two ranks
    assert [r["step"] for r in log if r["kind"] == "eval"] == [4, 8]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000004", "step_0000008"]
    assert (run / "last" / "model.pt").exists() and (run / "best" / "model.pt").exists()

"""recipes/gpu_talkers.sh end to end on CPU with a tiny config: what a GPU lease runs, minus the GPU."""
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from codectts.data.codecache import CacheEntry, write_cache_meta, write_codes, write_index
from codectts.text import PhonemeTokenizer

ROOT = Path(__file__).resolve().parent.parent
K, N = 2, 16
TEXTS = ["the cat sat", "a dog ran home", "birds sing", "rain falls", "we walk", "the sun is warm"]


def packed_cache(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny-codes"
    write_cache_meta(root, {"type": "synthetic-test"}, K, N, 20.0, 16000, "test")
    splits = {"train": [], "dev": []}
    for i, text in enumerate(TEXTS):
        phonemes = ["^", *PhonemeTokenizer().units(text), "$"]
        durs = [2] * len(phonemes)
        rel = write_codes(root, f"u{i}", rng.integers(0, N, size=(K, sum(durs))), N)
        splits["dev" if i < 2 else "train"].append(CacheEntry(id=f"u{i}", text=text, n_frames=sum(durs), file=rel,
                                                              speaker="0", phonemes=phonemes, durations=durs))
    for split, entries in splits.items():
        write_index(root, entries, split=split)
    tar = tmp_path / "codes.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(root, arcname=root.name)
    return tar


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("split") is None, reason="needs bash + coreutils")
def test_gpu_talkers_recipe_on_cpu(tmp_path):
    cfg = tmp_path / "tiny_talker.json"
    cfg.write_text(json.dumps({"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 64,
                               "codebooks": K, "codebook_size": N, "conditioning": "aligned", "text_layers": 1,
                               "batch_size": 4, "max_tokens": 400, "warmup_steps": 4, "eval_every": 5,
                               "max_steps": 10, "max_mel_length_percentile": 100}))
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "OUT": str(out), "PYTHON": sys.executable, "HOME": str(tmp_path)}
    r = subprocess.run(["bash", "recipes/gpu_talkers.sh", str(packed_cache(tmp_path)), "1", str(cfg)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    pieces = sorted(out.glob("tiny_talker.tar.*"))
    assert pieces, r.stdout[-2000:]
    with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in pieces))) as t:
        t.extractall(tmp_path / "back")
    from safetensors import safe_open

    from codectts.models.talker import Talker

    with safe_open(str(tmp_path / "back" / "fp16" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    assert Talker.load(tmp_path / "back" / "fp16").cfg.n_codebooks == K
    with tarfile.open(out / "logs.tar.gz") as t:
        names = t.getnames()
        log = t.extractfile("tiny_talker/log.jsonl").read().decode()
    assert "tiny_talker.log" in names and "tiny_talker/speed.json" in names
    assert any(json.loads(line)["kind"] == "eval" for line in log.splitlines())


def test_train_talker_fine_tunes_from_a_part_and_refuses_a_mismatch(tmp_path):
    """`codectts train talker --init-from PART`: start from trained weights (e.g. the default voice's)."""
    import torch

    from codectts.errors import CheckpointError
    from codectts.models.talker import Talker
    from codectts.train.talker import TalkerRunConfig, build_model, train_talker

    with tarfile.open(packed_cache(tmp_path)) as t:
        t.extractall(tmp_path / "unpacked")
    base = dict(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, codebooks=K, codebook_size=N,
                conditioning="aligned", text_layers=1, batch_size=4, max_tokens=400, warmup_steps=1,
                eval_every=0, max_steps=1, learning_rate=1e-9, max_mel_length_percentile=100,
                data_path=str(tmp_path / "unpacked" / "tiny-codes"))
    torch.manual_seed(123)
    source = build_model(TalkerRunConfig(**base), PhonemeTokenizer().vocab_size, 1)
    source.save(tmp_path / "source")
    train_talker(TalkerRunConfig(**base, out_dir=str(tmp_path / "run"), init_from=str(tmp_path / "source"),
                                 dropout=0.1))  # regularisation may differ
    tuned = Talker.load(tmp_path / "run" / "last")
    for (name, a), b in zip(source.state_dict().items(), tuned.state_dict().values(), strict=False):
        assert torch.allclose(a, b, atol=1e-5), name  # lr 1e-9: still the source's weights after one step
    with pytest.raises(CheckpointError, match="differs"):
        train_talker(TalkerRunConfig(**{**base, "d_model": 48}, out_dir=str(tmp_path / "run2"),
                                     init_from=str(tmp_path / "source")))

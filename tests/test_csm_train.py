"""`codectts train csm` recipe on a small synthetic code cache: logs, checkpoints, export, resume, batching."""
import json
import random
from dataclasses import replace

import numpy as np
import pytest

from codectts.data.codecache import (
    CacheEntry,
    CodeCache,
    write_cache_meta,
    write_codes,
    write_index,
)
from codectts.errors import ConfigError
from codectts.infer.csm import CSMGenerator
from codectts.models.sampling import SamplingConfig
from codectts.train.csm import (
    CSMRunConfig,
    CSMTask,
    load_utts,
    make_tokenizer,
    pair_contexts,
    train_csm,
)
from codectts.train.loop import TrainConfig

K, N = 3, 64
WORDS = ["red", "green", "blue", "cat", "dog", "sun", "sea", "tree"]


def word_codes(text: str, speaker: int) -> np.ndarray:
    """Three frames per letter, codes set by the letter, the frame and the speaker: [K, F]."""
    cols = [[(7 * (ord(ch) - 97) + 3 * j + k + 32 * speaker) % N for k in range(K)]
            for ch in text if ch.isalpha() for j in range(3)]
    return np.array(cols, dtype=np.int64).T


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("codes")
    rng = random.Random(0)
    write_cache_meta(root, {"type": "synthetic"}, K, N, frame_rate=25.0, sample_rate=16_000, source="test")
    for split, n in (("train", 60), ("dev", 6)):
        entries = []
        for i in range(n):
            speaker = i % 2
            text = " ".join(rng.sample(WORDS, rng.randint(1, 2)))
            codes = word_codes(text, speaker)
            uid = f"{split}{i:03d}"
            entries.append(CacheEntry(id=uid, text=text, n_frames=codes.shape[1], speaker=str(speaker),
                                      file=write_codes(root, uid, codes, N)))
        write_index(root, entries, split)
    return root


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_export_resume(cache_dir, tmp_path):
    out = tmp_path / "run"
    rc = CSMRunConfig(codes=str(cache_dir), preset="tiny", max_tokens=400)
    tcfg = TrainConfig(out_dir=str(out), lr=3e-3, warmup_steps=5, max_steps=60, log_every=10, eval_every=30,
                       save_every=30, sample_every=30, tensorboard=False, progress=False)
    result = train_csm(rc, tcfg)
    assert result["step"] == 60 and "dev_acc_c2" in result and result["score"] == result["dev_loss"]
    log = read_log(out)
    train = [r for r in log if r["kind"] == "train"]
    assert {"loss", "backbone_loss", "decoder_loss", "acc_c0", "acc_c1", "acc_c2", "lr"} <= set(train[0])
    assert train[-1]["loss"] < 0.6 * train[0]["loss"], (train[0]["loss"], train[-1]["loss"])
    for part in ("best", "last"):
        meta = json.loads((out / part / "config.json").read_text())
        assert meta["model_type"] == "csm" and meta["tokenizer"]["kind"] == "char" and meta["frame_rate"] == 25.0
    sample = out / "samples" / "step_0000030"
    assert np.load(sample / "0.npy").shape[0] == K  # codes only: a 'synthetic' codec cannot be loaded
    assert set(json.loads((sample / "0.json").read_text())) == {"text", "frames", "stopped"}
    gen = CSMGenerator.load(out / "last")
    res = gen.generate("red cat", sampling=SamplingConfig(temperature=0), max_frames=40)
    assert res.codes.shape[0] == K and res.codes.shape[1] <= 40

    # resume continues from the last checkpoint to the new step budget
    assert train_csm(rc, replace(tcfg, max_steps=70), resume=True)["step"] == 70
    steps = [r["step"] for r in read_log(out) if r["kind"] == "train"]
    assert steps[-1] == 70 and steps.count(60) == 1


def test_epoch_plan_bounds_and_contexts(cache_dir):
    from codectts.models.csm import CSM, preset

    cache = CodeCache(cache_dir)
    tok = make_tokenizer("char")
    utts = load_utts(cache, tok, max_len=400)
    assert len(utts) == 60
    rc = CSMRunConfig(codes=str(cache_dir), preset="tiny", context_prob=1.0, batch_size=5, max_tokens=300)
    model = CSM(preset("tiny", text_vocab_size=tok.vocab_size, n_codebooks=K, codebook_size=N))
    task = CSMTask(model, cache, utts, [], cache, rc, tok, {})
    batches, ctx = task.epoch_plan(0)
    assert sorted(i for b in batches for i in b) == list(range(60))  # every item once
    assert sum(c is not None for c in ctx) >= 50  # context_prob 1: nearly all found a partner that fits
    for i, c in enumerate(ctx):
        if c is not None:
            assert c != i and utts[c].speaker == utts[i].speaker
    for b in batches:
        seqs = [task._sequence(cache, utts[i], utts[ctx[i]] if ctx[i] is not None else None) for i in b]
        assert len(b) <= 5 and len(b) * max(len(s[0]) for s in seqs) <= 300
    again, ctx2 = task.epoch_plan(0)
    assert again == batches and ctx2 == ctx  # a pure function of (seed, epoch): resume replays it
    assert task.epoch_plan(1)[1] != ctx


def test_pair_contexts_respects_length():
    from codectts.train.csm import Utt

    utts = [Utt(i, [1, 5, 2], 50, "a") for i in range(4)]
    assert pair_contexts(utts, 1.0, max_len=100, rng=random.Random(0)) == [None] * 4  # 54 + 54 > 100
    assert all(c is not None for c in pair_contexts(utts, 1.0, max_len=200, rng=random.Random(0)))
    assert pair_contexts(utts[:1], 1.0, max_len=200, rng=random.Random(0)) == [None]  # nobody to pair with


def test_bad_run_configs(cache_dir, tmp_path):
    with pytest.raises(ConfigError, match="n-codebooks"):
        train_csm(CSMRunConfig(codes=str(cache_dir), preset="tiny", n_codebooks=K + 1),
                  TrainConfig(out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="tokenizer"):
        CSMRunConfig(tokenizer="bpe")
    with pytest.raises(ConfigError, match="decoder_fraction"):
        CSMRunConfig(decoder_fraction=0.0)

"""`train codec --init PART --freeze-codes`: a new (wider) decoder on frozen codes keeps every code."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from codectts.codecs.mel_rvq import MelRVQCodec
from codectts.data.manifest import Utterance, write_jsonl
from codectts.errors import ConfigError
from codectts.train.codec import CodecRunConfig, train_codec
from codectts.train.loop import TrainConfig

SR = 22050


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "wavs").mkdir()
    rng = np.random.default_rng(0)
    train, dev = [], []
    for i in range(8):
        t = np.arange(int((0.8 + 0.1 * i) * SR)) / SR
        wav = 0.3 * np.sin(2 * np.pi * (120 + 20 * i) * t * (1 + 0.2 * t)) + 0.01 * rng.standard_normal(t.size)
        sf.write(root / "wavs" / f"u{i}.wav", wav.astype(np.float32), SR)
        (dev if i >= 6 else train).append(Utterance(id=f"u{i}", audio=f"wavs/u{i}.wav", text="a tone"))
    write_jsonl(root / "manifest.jsonl", train)
    write_jsonl(root / "dev.jsonl", dev)
    return root


def tcfg(out, steps):
    return TrainConfig(out_dir=str(out), max_steps=steps, lr=3e-3, warmup_steps=1, weight_decay=0.0, eval_every=steps,
                       save_every=steps, log_every=1, tensorboard=False, progress=False)


def test_decoder_on_frozen_codes_keeps_codes_and_improves(corpus, tmp_path):
    first = train_codec(CodecRunConfig(data=str(corpus), preset="tiny", batch_size=4, segment_frames=32),
                        tcfg(tmp_path / "base", 20))
    base = MelRVQCodec.load(tmp_path / "base" / "best")
    rc = CodecRunConfig(data=str(corpus), batch_size=4, segment_frames=32, init=str(tmp_path / "base" / "best"),
                        freeze_codes=True, decoder_hidden=48, decoder_res_blocks=2, spectral_weight=0.5)
    after = train_codec(rc, tcfg(tmp_path / "dec", 40))
    new = MelRVQCodec.load(tmp_path / "dec" / "best")
    assert new.cfg.decoder_shape == (48, 2) and new.cfg.hidden == base.cfg.hidden
    assert new.context_frames == (new.cfg.kernel // 2) * 3
    mel = base.melspec(torch.from_numpy(sf.read(corpus / "wavs" / "u7.wav", dtype="float32")[0])[None])
    assert torch.equal(new.encode_mel(mel), base.encode_mel(mel))  # the codes (and the talker's world) are unchanged
    assert torch.equal(new.rvq.codebooks, base.rvq.codebooks) and torch.equal(new.mel_mean, base.mel_mean)
    # the same decoder shape starts from the old decoder and only gets better on the dev set
    rc = CodecRunConfig(data=str(corpus), batch_size=4, segment_frames=32, init=str(tmp_path / "base" / "best"),
                        freeze_codes=True)
    assert train_codec(rc, tcfg(tmp_path / "cont", 30))["recon_mse"] < first["recon_mse"]
    assert after["recon_mse"] < 10 * first["recon_mse"]


def test_freeze_codes_needs_init():
    with pytest.raises(ConfigError, match="--init"):
        CodecRunConfig(freeze_codes=True)


def test_decoder_shape_overrides_a_preset_too(corpus, tmp_path):
    rc = CodecRunConfig(data=str(corpus), preset="tiny", batch_size=4, segment_frames=32, decoder_hidden=40,
                        decoder_res_blocks=3)
    train_codec(rc, tcfg(tmp_path / "wide", 2))
    codec = MelRVQCodec.load(tmp_path / "wide" / "best")
    assert codec.cfg.decoder_shape == (40, 3) and codec.cfg.hidden != 40  # the encoder keeps the preset's width

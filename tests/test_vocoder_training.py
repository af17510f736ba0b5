"""HiFi-GAN training recipe on a tiny synthetic corpus: loss goes down, checkpoints resume, exports load."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from codectts.audio.mel import MelSpectrogram, mel_preset
from codectts.data.manifest import Utterance, write_jsonl
from codectts.errors import ConfigError, DataError
from codectts.train.loop import TrainConfig, Trainer
from codectts.train.vocoder import (
    VocoderRecipeConfig,
    VocoderTask,
    scan_clips,
    split_corpus,
    train_vocoder,
)
from codectts.vocoders import load_vocoder

MEL = mel_preset("vocoder")
SR, HOP = MEL.sample_rate, MEL.hop_length
SEG = 8  # frames per training segment in these tests


def tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))) / SR
    wav = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2 + 0.005 * rng.standard_normal(t.size)
    return wav.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """8 train + 2 dev harmonic clips, plus one too short to cut a segment from (skipped with a log)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "wavs").mkdir()
    train, dev = [], []
    for i in range(11):
        secs = 0.02 if i == 10 else 0.25 + 0.05 * i
        sf.write(root / "wavs" / f"u{i}.wav", tone(secs, 100 + 15 * i, i), SR)
        u = Utterance(id=f"u{i}", audio=f"wavs/u{i}.wav", text="a tone")
        (dev if i in (3, 7) else train).append(u)
    write_jsonl(root / "manifest.jsonl", train)
    write_jsonl(root / "dev.jsonl", dev)
    return root


def make_task(corpus, **kw) -> VocoderTask:
    rc = VocoderRecipeConfig(preset="tiny", segment_frames=SEG, batch_size=4, disc_width=0.0625, eval_utts=2,
                             **kw)
    utts, root, dev, dev_root = split_corpus(corpus, 2, 0)
    from codectts.vocoders.hifigan import preset as hifigan_preset

    return VocoderTask(rc, hifigan_preset("tiny"), scan_clips(utts, root, MEL, SEG), scan_clips(dev, dev_root, MEL, 1))


def tcfg(tmp_path, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / "run"), max_steps=4, lr=2e-3, betas=(0.8, 0.99), warmup_steps=1,
                eval_every=0, save_every=0, log_every=1, tensorboard=False, progress=False, grad_clip=100.0)
    base.update(kw)
    return TrainConfig(**base)


def test_short_clips_are_skipped_and_batches_are_deterministic(corpus):
    task = make_task(corpus)
    ids = [c.utt.id for c in task.train_clips]
    assert len(ids) == 8 and "u10" not in ids  # u10 (0.02 s) is shorter than a segment
    assert list(task.train_batches(0)) == list(task.train_batches(0))
    assert list(task.train_batches(0)) != list(task.train_batches(1))
    mel, wav = task.load_batch(next(iter(task.train_batches(0))), rng=__import__("random").Random(0))
    assert mel.shape == (4, 80, SEG) and wav.shape == (4, SEG * HOP)
    # the input mel is the real audio's mel at the same frames
    ms = MelSpectrogram(MEL)
    inner = (ms(wav) - mel)[..., 2:-2].abs().max()
    assert inner < 1e-3


def test_generator_steps_reduce_the_mel_loss(corpus, tmp_path):
    """Generator-only warm-up steps on one fixed batch must lower mel L1 (the basic learning check)."""
    torch.manual_seed(0)
    task = make_task(corpus, disc_start=10_000)
    trainer = Trainer(task, tcfg(tmp_path))
    batch = next(iter(task.train_batches(0)))
    first = task.train_step(batch, trainer)["mel_l1"]
    for _ in range(14):
        last = task.train_step(batch, trainer)["mel_l1"]
    assert last < 0.85 * first, (first, last)


def test_short_window_mels_weigh_in_the_loss(corpus, tmp_path):
    """`lambda_fine` adds exactly lambda x the short-window log-mel L1 to the generator loss; 0 turns it off."""
    task = make_task(corpus, disc_start=10_000)
    assert [m.cfg.hop_length for m in task.fine_melspecs] == [32, 64, 128]
    batch = next(iter(task.train_batches(0)))
    losses = {}
    for weight in (0.0, 15.0):
        torch.manual_seed(0)
        task = make_task(corpus, disc_start=10_000, lambda_fine=weight)
        losses[weight] = task.train_step(batch, Trainer(task, tcfg(tmp_path)))
    assert "fine_mel_l1" not in losses[0.0]
    added = losses[15.0]["loss"] - losses[0.0]["loss"]
    assert added == pytest.approx(15.0 * losses[15.0]["fine_mel_l1"], rel=1e-3)


def test_gan_step_runs_and_updates_both_sides(corpus, tmp_path):
    torch.manual_seed(0)
    task = make_task(corpus, disc_start=0)
    trainer = Trainer(task, tcfg(tmp_path))
    g0 = [p.detach().clone() for p in task.model.generator.parameters()]
    d0 = [p.detach().clone() for p in task.model.discriminators.parameters()]
    m = task.train_step(next(iter(task.train_batches(0))), trainer)
    assert {"loss", "mel_l1", "d_loss", "adv", "fm"} <= set(m) and all(math.isfinite(v) for v in m.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, task.model.generator.parameters(), strict=False))
    assert any(not torch.equal(a, b) for a, b in zip(d0, task.model.discriminators.parameters(), strict=False))


def test_checkpoint_resume_round_trip_and_export(corpus, tmp_path):
    rc = VocoderRecipeConfig(preset="tiny", segment_frames=SEG, batch_size=4, disc_width=0.0625, eval_utts=2)
    metrics = train_vocoder(corpus, tmp_path / "run", rc, tcfg(tmp_path, max_steps=3, sample_every=3))
    out = tmp_path / "run"
    assert {"score", "mel_l1", "mrstft", "griffinlim_mel_l1"} <= set(metrics)
    assert (out / "last" / "model.safetensors").exists() and (out / "best" / "config.json").exists()
    assert list((out / "samples" / "step_0000003").glob("*.wav"))
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "train" and "d_loss" in r for r in logs)
    # the exported part is a working Vocoder
    voc = load_vocoder({"type": "hifigan", "path": "last"}, root=out)
    assert voc(torch.randn(1, 80, 5) - 4).shape == (1, 5 * HOP)

    # resume: a fresh task restores weights, both optimisers and the step, then continues
    task = make_task(corpus)
    trainer = Trainer(task, tcfg(tmp_path, max_steps=5))
    assert trainer.resume()
    assert trainer.step == 3
    saved = torch.load(sorted((out / "checkpoints").glob("step_*"))[-1] / "state.pt", weights_only=True)
    for k, v in task.model.state_dict().items():
        torch.testing.assert_close(v, saved["model"][k])
    assert trainer.optimizers[1].state_dict()["state"]  # the discriminators' Adam moments came back too
    trainer.fit()
    assert trainer.step == 5


def test_init_from_a_part_reproduces_it(corpus, tmp_path):
    """--init loads a released generator into the weight-normed training generator exactly."""
    from codectts.vocoders.hifigan import HiFiGAN as Voc
    from codectts.vocoders.hifigan import preset as hifigan_preset

    torch.manual_seed(3)
    voc = Voc(hifigan_preset("tiny"))
    for p in voc.parameters():
        p.data.normal_(0, 0.1)
    voc.save(tmp_path / "part")
    task = make_task(corpus, init=str(tmp_path / "part"))
    mel = torch.randn(1, 80, 6) - 4
    with torch.no_grad():
        torch.testing.assert_close(task.model.generator(mel).squeeze(1), voc(mel), atol=1e-5, rtol=1e-4)


def test_codec_mels_are_used_and_checked(corpus, tmp_path):
    codec = tmp_path / "codec"
    codec.mkdir()
    for i in range(10):
        wav, _ = sf.read(corpus / "wavs" / f"u{i}.wav", dtype="float32")
        np.save(codec / f"u{i}.npy", np.full((80, MEL.n_frames(len(wav))), -3.0, dtype=np.float32))
    task = make_task(corpus, codec_mels=str(codec))
    mel, _ = task.load_batch(next(iter(task.train_batches(0))), rng=__import__("random").Random(0))
    assert torch.all(mel == -3.0)
    np.save(codec / "u0.npy", np.zeros((128, 30), dtype=np.float32))
    task = make_task(corpus, codec_mels=str(codec))
    with pytest.raises(DataError, match="u0"):
        for b in task.train_batches(0):
            task.load_batch(b, rng=__import__("random").Random(0))


def test_bad_recipe_inputs(corpus, tmp_path):
    with pytest.raises(ConfigError):
        VocoderRecipeConfig(segment_frames=1)
    rc = VocoderRecipeConfig(preset="tiny", segment_frames=400, batch_size=4)  # no clip is that long
    with pytest.raises(DataError, match="usable"):
        train_vocoder(corpus, tmp_path / "r", rc, tcfg(tmp_path))
    with pytest.raises(ConfigError, match="preset"):
        train_vocoder(corpus, tmp_path / "r", VocoderRecipeConfig(preset="huge"), tcfg(tmp_path))


# ---- Vocos through the same recipe -------------------------------------------------------------------
def test_vocos_learns_trains_exports_and_records_its_codec(corpus, tmp_path):
    from codectts.codecs.mel_rvq import MelRVQCodec, MelRVQConfig
    from codectts.vocoders import Vocos
    from codectts.vocoders.vocos import preset as vocos_preset

    torch.manual_seed(0)
    rc = VocoderRecipeConfig(preset="tiny", arch="vocos", segment_frames=SEG, batch_size=4, disc_width=0.0625,
                             eval_utts=2, disc_start=10_000)
    utts, root, dev, dev_root = split_corpus(corpus, 2, 0)
    task = VocoderTask(rc, vocos_preset("tiny"), scan_clips(utts, root, MEL, SEG), scan_clips(dev, dev_root, MEL, 1))
    trainer = Trainer(task, tcfg(tmp_path / "steps", lr=3e-3))
    batch = next(iter(task.train_batches(0)))
    first = task.train_step(batch, trainer)["mel_l1"]
    for _ in range(14):
        last = task.train_step(batch, trainer)["mel_l1"]
    assert last < 0.85 * first, (first, last)

    codec = MelRVQCodec(MelRVQConfig(mel=MEL, stack=2, arch="conv", hidden=8, n_res_blocks=1, n_codebooks=2,
                                     codebook_size=8))
    codec.save(tmp_path / "codec")
    rc = VocoderRecipeConfig(preset="tiny", arch="vocos", segment_frames=SEG, batch_size=4, disc_width=0.0625,
                             eval_utts=2, disc_start=1, codec=str(tmp_path / "codec"))
    metrics = train_vocoder(corpus, tmp_path / "run", rc, tcfg(tmp_path, max_steps=2))
    assert math.isfinite(metrics["mel_l1"])
    voc = load_vocoder({"type": "vocos", "path": "last"}, root=tmp_path / "run")
    assert isinstance(voc, Vocos) and voc(torch.randn(1, 80, 5) - 4).shape == (1, 5 * HOP)
    assert voc.codec["config"]["n_codebooks"] == 2  # made for that codec: another one is refused
    voc.check_codec(MelRVQCodec.load(tmp_path / "codec"))
    with pytest.raises(ConfigError, match="decoded mels"):
        voc.check_codec(MelRVQCodec(codec.cfg))
    with pytest.raises(ConfigError):
        VocoderRecipeConfig(arch="wavenet")

"""Recipe: `codectts train vocoder --data CORPUS --preset P --out RUN` (the seeds' train_vocoder.py).

`--arch hifigan` (default) or `--arch vocos` (ConvNeXt -> STFT magnitude + phase -> one iSTFT;
vocoders/vocos.py): same data, losses, discriminators, checkpoints and evaluation for both.

HiFi-GAN on random one-second-scale segments of a corpus: the generator sees the log-mel of the
whole utterance (exactly what inference sees), sliced to the segment; the losses compare the
segment's audio. Optimisers: AdamW for the generator and for the discriminators (MPD + MSD).
Generator loss = LSGAN adversarial + 2 x feature matching + 45 x mel L1 (HiFi-GAN's weights)
+ 15 x short-window log-mel L1 (`lambda_fine`, FINE_MEL_SCALES: onsets the 1024-point mel smears).
Before `disc_start` steps the generator trains alone on the mel terms + MR-STFT (cheap on CPU, and a
sound start for the GAN). Held-out evaluation: log-mel L1 and MR-STFT on whole dev utterances,
with Griffin-Lim's figures on the same audio logged once as the bar to clear.

`--codec-mels DIR` fine-tunes on a codec's reconstructions: DIR/<utterance id>.npy holds the
codec's decoded log-mel [n_mels, F] (float32, the vocoder's mel config); the target stays the real
audio, so the vocoder learns to undo the codec's artefacts. `--codec PART` does the same on the fly
(each utterance's mel through that codec's encode/decode) and, for Vocos, records the codec's identity
in the released part, which then refuses any other codec at load.

Multi-GPU is not supported by this recipe (the two optimisers step outside DDP's hooks).
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import typer
from torch import nn

from codectts.audio.io import load_audio, save_wav
from codectts.audio.mel import MelConfig, MelSpectrogram, mel_preset
from codectts.data.manifest import Utterance, read_corpus
from codectts.errors import AudioError, ConfigError, DataError
from codectts.parts import save_part
from codectts.train.cli import RunOptions, data_option, recipe_command
from codectts.train.loop import Task, TrainConfig, Trainer, adamw
from codectts.vocoders.discriminators import DiscriminatorConfig, Discriminators
from codectts.vocoders.griffinlim import GriffinLim
from codectts.vocoders.hifigan import (
    Generator,
    HiFiGAN,
    HiFiGANConfig,
    plain_state_dict,
)
from codectts.vocoders.hifigan import preset as hifigan_preset
from codectts.vocoders.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    multi_resolution_stft,
)
from codectts.vocoders.vocos import Vocos, VocosConfig, VocosGenerator, codec_identity
from codectts.vocoders.vocos import preset as vocos_preset

log = logging.getLogger(__name__)

GAN_BETAS = (0.8, 0.99)  # HiFi-GAN's AdamW betas
LAMBDA_MEL = 45.0
LAMBDA_FM = 2.0
LAMBDA_STFT = 1.0  # warm-up only (before the discriminators start)
# Log-mels with short windows (n_fft, n_mels), hop = n_fft / 4, up to the vocoder mel's fmax: the 1024-point
# training mel cannot see a 5 ms onset, and soft consonant bursts cost words (DAC's multi-scale mel idea).
FINE_MEL_SCALES: tuple[tuple[int, int], ...] = ((128, 16), (256, 32), (512, 64))
LAMBDA_FINE = 15.0
SAMPLE_UTTS = 2
CODEC_MEL_FRAME_SLACK = 2  # codec mels may differ from ceil(T / hop) by this many frames


@dataclass
class VocoderRecipeConfig:
    """What `codectts train vocoder` trains; saved in each checkpoint's run.json."""

    preset: str = "small"
    arch: str = "hifigan"  # "hifigan" or "vocos"
    mel_preset: str = "vocoder"
    segment_frames: int = 32  # 32 x 256 = 8192 samples, HiFi-GAN's segment
    batch_size: int = 16
    lambda_mel: float = LAMBDA_MEL
    lambda_fm: float = LAMBDA_FM
    lambda_stft: float = LAMBDA_STFT
    lambda_fine: float = LAMBDA_FINE  # weight of the short-window log-mel L1 (FINE_MEL_SCALES); 0 turns it off
    disc_start: int = 0  # generator-only steps (mel + MR-STFT) before the GAN starts
    periods: tuple[int, ...] = (2, 3, 5)
    n_scales: int = 2
    disc_width: float = 1.0
    eval_utts: int = 8
    eval_seconds: float = 4.0  # crop dev utterances to bound evaluation time on CPU
    codec_mels: str | None = None
    codec: str | None = None  # a codec part: decode each utterance's mel through it on the fly
    codec_mel_prob: float = 1.0  # chance a segment uses the codec's mel instead of the real one
    init: str | None = None  # start the generator from a released part (fine-tuning)
    seed: int = 0

    def __post_init__(self):
        if self.segment_frames < 2:
            raise ConfigError(f"segment_frames must be >= 2, got {self.segment_frames}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.codec_mel_prob <= 1.0:
            raise ConfigError(f"codec_mel_prob must be in [0, 1], got {self.codec_mel_prob}")
        if self.arch not in ("hifigan", "vocos"):
            raise ConfigError(f"arch must be hifigan or vocos, got {self.arch!r}")
        if self.codec and self.codec_mels:
            raise ConfigError("give --codec or --codec-mels, not both")


class VocoderGAN(nn.Module):
    """Generator + discriminators as one module, so the Trainer's checkpoints hold both."""

    def __init__(self, gcfg: HiFiGANConfig | VocosConfig, dcfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = gcfg
        self.generator = (VocosGenerator(gcfg) if isinstance(gcfg, VocosConfig)
                          else Generator(gcfg, use_weight_norm=True))
        self.discriminators = Discriminators(dcfg)


@dataclass
class Clip:
    utt: Utterance
    root: Path
    n_frames: int


def scan_clips(utts: list[Utterance], root: Path, mel: MelConfig, min_frames: int) -> list[Clip]:
    """Utterances with at least `min_frames` mel frames; the rest are skipped with a logged count."""
    import soundfile as sf

    clips, short, bad = [], 0, 0
    for u in utts:
        path = u.audio_path(root)
        if u.duration and u.sample_rate == mel.sample_rate:
            n = mel.n_frames(round(u.duration * mel.sample_rate))
        else:
            try:
                info = sf.info(str(path))
            except (RuntimeError, sf.LibsndfileError) as e:
                log.warning("skip %s: %s", u.id, e)
                bad += 1
                continue
            n = mel.n_frames(round(info.frames * mel.sample_rate / info.samplerate))
        if n < min_frames:
            short += 1
            continue
        clips.append(Clip(u, root, n))
    if short or bad:
        log.warning("skipped %d utterance(s) shorter than %d frames and %d unreadable, of %d", short, min_frames,
                    bad, len(utts))
    return clips


class VocoderTask(Task):
    multi_process = False  # the two optimisers step outside DDP's hooks

    def __init__(self, rc: VocoderRecipeConfig, gcfg: HiFiGANConfig | VocosConfig, train: list[Clip],
                 dev: list[Clip], codec=None):
        self.rc, self.gcfg = rc, gcfg
        self.mel_cfg = gcfg.mel
        self.codec = codec
        self.model = VocoderGAN(gcfg, DiscriminatorConfig(rc.periods, rc.n_scales, rc.disc_width))
        if rc.init and rc.arch == "vocos":
            init = Vocos.load(rc.init)
            if init.cfg.to_dict() | {"codec": None} != gcfg.to_dict() | {"codec": None}:
                raise ConfigError(f"--init {rc.init}: a vocos of another shape or mel config than --preset {rc.preset}")
            self.model.generator.load_state_dict(init.generator.state_dict())
        elif rc.init:
            init = HiFiGAN.load(rc.init)
            init.mel.check_compatible(self.mel_cfg, f"--init {rc.init}")
            _load_plain_into_weight_norm(self.model.generator, init.generator)
        self.train_clips, self.dev_clips = train, dev
        self.melspec = MelSpectrogram(self.mel_cfg)  # training device
        self.cpu_melspec = MelSpectrogram(self.mel_cfg)  # CPU: input mels, dev items, scores
        self.fine_melspecs = torch.nn.ModuleList(
            MelSpectrogram(replace(self.mel_cfg, n_fft=n_fft, win_length=n_fft, hop_length=n_fft // 4, n_mels=n_mels))
            for n_fft, n_mels in FINE_MEL_SCALES)
        self.codec_dir = Path(rc.codec_mels) if rc.codec_mels else None
        self._gl_reference: dict[str, float] | None = None
        self._dev_cache: list[tuple[str, torch.Tensor, torch.Tensor]] | None = None

    # ---- optimisers ------------------------------------------------------------------------
    def configure_optimizers(self, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        return [adamw(self.model, cfg, self.model.generator.parameters()),
                adamw(self.model, cfg, self.model.discriminators.parameters())]

    # ---- data --------------------------------------------------------------------------------
    def train_batches(self, epoch: int) -> Iterator[list[tuple[int, int]]]:
        """Lazy batches of (clip index, start frame): cheap to skip when resuming mid-epoch."""
        rng = random.Random(f"{self.rc.seed}:{epoch}")
        order = list(range(len(self.train_clips)))
        rng.shuffle(order)
        seg, bs = self.rc.segment_frames, self.rc.batch_size
        for i in range(0, len(order) - bs + 1, bs):
            yield [(j, rng.randrange(0, self.train_clips[j].n_frames - seg + 1)) for j in order[i:i + bs]]

    def _codec_mel(self, utt: Utterance) -> torch.Tensor | None:
        path = self.codec_dir / f"{utt.id}.npy"
        if not path.exists():
            return None
        try:
            m = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: unreadable codec mel ({e})") from None
        if m.ndim != 2 or m.shape[0] != self.mel_cfg.n_mels:
            raise DataError(f"{path}: codec mel must be [{self.mel_cfg.n_mels}, F], got {list(m.shape)}")
        return torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))

    def load_batch(self, batch: list[tuple[int, int]], rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (input log-mel [B, M, seg], real audio [B, seg * hop])."""
        hop, seg = self.mel_cfg.hop_length, self.rc.segment_frames
        mels, wavs = [], []
        for j, start in batch:
            clip = self.train_clips[j]
            wav, _ = load_audio(clip.utt.audio_path(clip.root), sr=self.mel_cfg.sample_rate)
            x = torch.from_numpy(wav)
            mel = None
            if self.codec is not None and rng.random() < self.rc.codec_mel_prob:
                real = self.cpu_melspec(x[None])
                with torch.no_grad():
                    mel = self.codec.decode_mel(self.codec.encode_mel(real))[0, :, : real.shape[-1]]
            elif self.codec_dir is not None and rng.random() < self.rc.codec_mel_prob:
                mel = self._codec_mel(clip.utt)
                if mel is not None and abs(mel.shape[-1] - self.mel_cfg.n_frames(len(wav))) > CODEC_MEL_FRAME_SLACK:
                    raise DataError(f"{clip.utt.id}: codec mel has {mel.shape[-1]} frames, audio gives "
                                    f"{self.mel_cfg.n_frames(len(wav))}")
            if mel is None:
                mel = self.cpu_melspec(x[None])[0]
            n = min(mel.shape[-1], self.mel_cfg.n_frames(len(wav)))
            start = min(start, max(0, n - seg))  # the manifest's duration may round differently
            m = mel[:, start:start + seg]
            w = x[start * hop:(start + seg) * hop]
            if m.shape[-1] < seg or w.shape[-1] < seg * hop:  # pad the rare clip that came up short
                m = F.pad(m, (0, seg - m.shape[-1]), value=self.mel_cfg.log_min)
                w = F.pad(w, (0, seg * hop - w.shape[-1]))
            mels.append(m)
            wavs.append(w)
        return torch.stack(mels), torch.stack(wavs)

    # ---- one GAN step ------------------------------------------------------------------------
    def train_step(self, batch, trainer: Trainer) -> dict[str, float]:
        acc, rc = trainer.accelerator, self.rc
        gan: VocoderGAN = acc.unwrap_model(self.model)
        opt_g, opt_d = trainer.optimizers
        rng = random.Random(f"{rc.seed}:codec:{trainer.step}")
        mel, wav = (t.to(acc.device) for t in self.load_batch(batch, rng))
        melspec = self.melspec.to(acc.device)
        with acc.autocast():
            fake = gan.generator(mel).float()  # [B, 1, T]
        loss_mel = F.l1_loss(melspec(fake.squeeze(1)), melspec(wav))
        metrics: dict[str, float] = {"mel_l1": float(loss_mel.detach())}
        recon = rc.lambda_mel * loss_mel
        if rc.lambda_fine > 0:
            fine_melspecs = self.fine_melspecs.to(acc.device)
            loss_fine = sum(F.l1_loss(m(fake.squeeze(1)), m(wav)) for m in fine_melspecs) / len(fine_melspecs)
            recon = recon + rc.lambda_fine * loss_fine
            metrics["fine_mel_l1"] = float(loss_fine.detach())
        real = wav.unsqueeze(1)
        if trainer.step >= rc.disc_start:
            with acc.autocast():
                scores, fmaps = gan.discriminators(torch.cat([real, fake.detach()]))
            b = real.shape[0]
            real_scores = [s[:b].float() for s in scores]
            loss_d = discriminator_loss(real_scores, [s[b:].float() for s in scores])
            norm_d = trainer.optimize(opt_d, loss_d, gan.discriminators.parameters())
            if norm_d is None:
                return {"loss": float("nan")}
            metrics["grad_norm_d"] = norm_d
            # Real features from the pass above (targets are detached), generated ones through the updated D.
            real_fmaps = [[f[:b].detach().float() for f in fm] for fm in fmaps]
            with acc.autocast():
                fake_scores, fake_fmaps = gan.discriminators(fake)
            adv = generator_adv_loss([s.float() for s in fake_scores])
            fm = feature_matching_loss(real_fmaps, [[f.float() for f in fm] for fm in fake_fmaps])
            loss_g = adv + rc.lambda_fm * fm + recon
            metrics.update(d_loss=float(loss_d.detach()), adv=float(adv.detach()), fm=float(fm.detach()))
        else:
            stft = multi_resolution_stft(fake, wav).total
            loss_g = recon + rc.lambda_stft * stft
            metrics["mrstft"] = float(stft.detach())
        norm_g = trainer.optimize(opt_g, loss_g, gan.generator.parameters())
        if norm_g is None:
            return {"loss": float("nan")}
        metrics["grad_norm_g"] = norm_g
        return {"loss": float(loss_g.detach()), **metrics}

    # ---- evaluation, samples, export -------------------------------------------------------
    def _dev_items(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """(id, log-mel [1, M, F], audio [1, F * hop]) for the first `eval_utts` dev clips, cropped."""
        if self._dev_cache is None:
            items = []
            max_frames = self.mel_cfg.n_frames(int(self.rc.eval_seconds * self.mel_cfg.sample_rate))
            for clip in self.dev_clips[:self.rc.eval_utts]:
                try:
                    wav, _ = load_audio(clip.utt.audio_path(clip.root), sr=self.mel_cfg.sample_rate)
                except AudioError as e:
                    log.warning("dev clip skipped: %s", e)
                    continue
                x = torch.from_numpy(wav)[None]
                mel = self.cpu_melspec(x)[..., :max_frames]
                x = F.pad(x, (0, max(0, mel.shape[-1] * self.mel_cfg.hop_length - x.shape[-1])))
                items.append((clip.utt.id, mel, x[:, :mel.shape[-1] * self.mel_cfg.hop_length]))
            self._dev_cache = items
        return self._dev_cache

    def _score(self, vocode) -> dict[str, float]:
        l1 = stft = n = 0.0
        melspec = self.cpu_melspec
        for _, mel, wav in self._dev_items():
            y = vocode(mel).reshape(1, -1).float().cpu()
            l1 += float(F.l1_loss(melspec(y), mel)) * mel.shape[-1]
            stft += float(multi_resolution_stft(y, wav).total) * mel.shape[-1]
            n += mel.shape[-1]
        return {"mel_l1": l1 / max(n, 1), "mrstft": stft / max(n, 1)}

    def evaluate(self) -> dict[str, float]:
        if not self._dev_items():
            return {}
        gen = _unwrap(self.model).generator
        device = next(gen.parameters()).device
        out = self._score(lambda m: gen(m.to(device)))
        if self._gl_reference is None:
            gl = GriffinLim(self.mel_cfg)
            self._gl_reference = {f"griffinlim_{k}": v for k, v in self._score(gl).items()}
        return {"score": out["mel_l1"], **out, **self._gl_reference}

    def sample(self, out_dir: Path, step: int) -> None:
        gen = _unwrap(self.model).generator
        device = next(gen.parameters()).device
        for uid, mel, wav in self._dev_items()[:SAMPLE_UTTS]:
            y = gen(mel.to(device)).reshape(-1).float().cpu().numpy()
            save_wav(out_dir / f"{uid}.wav", y, self.mel_cfg.sample_rate)
            ref = out_dir.parent / "reference" / f"{uid}.wav"
            if not ref.exists():
                save_wav(ref, wav.reshape(-1).numpy(), self.mel_cfg.sample_rate)

    def export(self, path: Path) -> None:
        gen = _unwrap(self.model).generator
        training = {"preset": self.rc.preset, "codec_mels": bool(self.rc.codec_mels or self.rc.codec)}
        if self.rc.arch == "vocos":
            save_part(path, gen.state_dict(), self.gcfg, Vocos.model_type, extra={"training": training})
        else:
            save_part(path, plain_state_dict(gen), self.gcfg, HiFiGAN.model_type, extra={"training": training})


def _unwrap(model: nn.Module) -> VocoderGAN:
    return getattr(model, "module", model)


def _load_plain_into_weight_norm(gen: Generator, plain: Generator) -> None:
    """Copy folded weights into a weight-normed generator (g = |w|, v = w reproduces w exactly)."""
    from torch.nn.utils import parametrize

    src = dict(plain.named_modules())
    with torch.no_grad():
        for name, m in gen.named_modules():
            p = src.get(name)
            if p is None or not hasattr(p, "weight"):
                continue
            if parametrize.is_parametrized(m, "weight"):
                m.weight = p.weight.detach().clone()  # the weight-norm parametrisation's right_inverse
            elif hasattr(m, "weight") and m.weight is not None:
                m.weight.copy_(p.weight)
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(p.bias)


def split_corpus(data: Path, max_dev: int, seed: int) -> tuple[list[Utterance], Path, list[Utterance], Path]:
    utts, root = read_corpus(data, "train")
    try:
        dev, dev_root = read_corpus(data, "dev")
    except DataError:
        utts = list(utts)
        random.Random(seed).shuffle(utts)
        dev, dev_root, utts = utts[:max_dev], root, utts[max_dev:]
    return utts, root, dev, dev_root


def train_vocoder(data: Path, out: Path, rc: VocoderRecipeConfig, tcfg: TrainConfig, resume: bool = False,
                  overrides: dict | None = None) -> dict[str, float]:
    """Build the task from a corpus and run the shared loop; returns the last evaluation."""
    mel = mel_preset(rc.mel_preset)
    codec = None
    if rc.codec:
        from codectts.codecs.mel_rvq import MelRVQCodec

        codec = MelRVQCodec.load(rc.codec)
        codec.cfg.mel.check_compatible(mel, f"--codec {rc.codec} vs --mel-preset {rc.mel_preset}")
    if rc.arch == "vocos":
        gcfg = vocos_preset(rc.preset, mel=mel, codec=codec_identity(codec) if codec is not None else None,
                            **(overrides or {}))
    else:
        gcfg = hifigan_preset(rc.preset, mel=mel, **(overrides or {}))
    utts, root, dev_utts, dev_root = split_corpus(data, max(rc.eval_utts, 1), rc.seed)
    train = scan_clips(utts, root, mel, rc.segment_frames)
    dev = scan_clips(dev_utts, dev_root, mel, 1)
    if len(train) < rc.batch_size:
        raise DataError(f"{data}: {len(train)} usable utterance(s) of >= {rc.segment_frames} frames, fewer than "
                        f"one batch of {rc.batch_size}")
    if rc.codec_mels and not Path(rc.codec_mels).is_dir():
        raise ConfigError(f"--codec-mels {rc.codec_mels}: not a directory of <utterance id>.npy files")
    task = VocoderTask(rc, gcfg, train, dev, codec=codec)
    n_g = sum(p.numel() for p in task.model.generator.parameters())
    n_d = sum(p.numel() for p in task.model.discriminators.parameters())
    log.info("%s %s: generator %.2f M, discriminators %.2f M parameters; %d train / %d dev clips",
             rc.arch, rc.preset, n_g / 1e6, n_d / 1e6, len(train), len(dev))
    trainer = Trainer(task, tcfg, run_config={"vocoder": asdict(rc), "generator": gcfg.to_dict(), "data": str(data)})
    if resume:
        trainer.resume()
    return trainer.fit()


def register(app: typer.Typer) -> None:
    @recipe_command(app, "vocoder", out=Path("runs/vocoder"), max_steps=100_000, lr=2e-4, warmup_steps=100,
                    grad_clip=100.0, batch_size=16, eval_every=500, save_every=500, sample_every=1000,
                    precision="no", seed=0)
    def train_vocoder_cmd(
        opts: RunOptions,
        data: Path = data_option(),
        preset: str = typer.Option("small", help="Generator preset: hifigan seed, v1, v3, small, tiny; "
                                                 "vocos base, small, tiny."),
        arch: str = typer.Option("hifigan", help="hifigan or vocos (ConvNeXt -> magnitude + phase -> iSTFT)."),
        mel: str = typer.Option("vocoder", "--mel-preset", help="Mel frontend preset (codectts.audio.mel_preset)."),
        segment_frames: int = typer.Option(32),
        disc_start: int = typer.Option(0, help="Generator-only (mel + MR-STFT) steps before the GAN starts."),
        disc_width: float = typer.Option(1.0, help="Discriminator channel multiplier (< 1 for CPU)."),
        periods: str = typer.Option("2,3,5", help="MPD periods, comma-separated (HiFi-GAN: 2,3,5,7,11)."),
        scales: int = typer.Option(2, help="MSD scales."),
        codec_mels: Path | None = typer.Option(
            None, help="Folder of <utterance id>.npy codec-decoded mels to fine-tune on."
        ),
        codec: Path | None = typer.Option(
            None, help="Codec part: train on its decoded mels, computed on the fly (recorded in a vocos part)."
        ),
        codec_mel_prob: float = typer.Option(1.0, help="Share of segments using the codec's mel."),
        init: Path | None = typer.Option(None, help="Start the generator from a released part."),
        lambda_fine: float = typer.Option(LAMBDA_FINE, help="Weight of the short-window log-mel L1 (0: off)."),
        eval_utts: int = typer.Option(8),
    ):
        """Train a HiFi-GAN or Vocos vocoder (checkpoints, --resume, audio samples, JSONL/TensorBoard logs)."""
        try:
            period_list = tuple(int(p) for p in periods.split(",") if p.strip())
        except ValueError:
            raise ConfigError(f"--periods must be comma-separated integers, got {periods!r}") from None
        rc = VocoderRecipeConfig(
            preset=preset,
            arch=arch,
            mel_preset=mel,
            segment_frames=segment_frames,
            batch_size=opts.batch_size,
            disc_start=disc_start,
            periods=period_list,
            n_scales=scales,
            disc_width=disc_width,
            eval_utts=eval_utts,
            codec_mels=str(codec_mels) if codec_mels else None,
            codec=str(codec) if codec else None,
            codec_mel_prob=codec_mel_prob,
            init=str(init) if init else None,
            lambda_fine=lambda_fine,
            seed=opts.seed,
        )
        tcfg = opts.train_config(betas=GAN_BETAS)
        typer.echo(json.dumps(train_vocoder(data, Path(tcfg.out_dir), rc, tcfg, resume=opts.resume)))

"""Recipe: `codectts train codec --data CORPUS --preset P --out RUN` (seed 002, Stage D part 1).

Trains a MelRVQCodec on random crops of corpus log-mels; reports held-out reconstruction MSE on
standardised mels (and on raw natural-log mels) plus per-codebook usage and perplexity each eval.

Loss: MSE on standardised mels, plus (`--spectral-weight`) MSE on their first differences along time
and frequency. MSE alone rewards the conditional mean, which blurs harmonics and onsets (the
"metallic" Griffin-Lim sound of decoded mels); the difference terms put weight on exactly that
local spectral contrast.

`--init PART --freeze-codes` trains a new decoder (`--decoder-hidden/--decoder-blocks` may widen or
deepen it) on the frozen encoder and codebooks of an existing codec: every utterance keeps exactly
the codes it had, so acoustic models trained on that codec keep working and a voice only swaps its
codec folder. The decoder learns from whole-utterance codes, as it will meet them at inference.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import typer

from codectts.errors import ConfigError, DataError
from codectts.train.cli import RunOptions, data_option, recipe_command
from codectts.train.loop import Task, TrainConfig, Trainer

log = logging.getLogger(__name__)


class CodecTask(Task):
    def __init__(self, model, train_mels: list[torch.Tensor], dev_mels: list[torch.Tensor], batch_size: int,
                 segment_frames: int, steps_per_epoch: int, seed: int, spectral_weight: float = 0.0,
                 train_codes: list[torch.Tensor] | None = None):
        self.model = model
        self.spectral_weight = spectral_weight
        self.train_codes = train_codes  # frozen codes of each train mel: only the decoder learns
        self.train_mels, self.dev_mels = train_mels, dev_mels
        self.batch_size, self.seg, self.steps_per_epoch, self.seed = batch_size, segment_frames, steps_per_epoch, seed

    def train_batches(self, epoch: int):
        rng = random.Random(f"{self.seed}:{epoch}")
        plan = []  # (mel index, crop start) per item: the crops are drawn whether or not this rank uses them
        for _ in range(self.steps_per_epoch):
            batch = []
            for _ in range(self.batch_size):
                j = rng.randrange(len(self.train_mels))
                n = self.train_mels[j].shape[-1]
                batch.append((j, rng.randrange(0, n - self.seg + 1) if n > self.seg else 0))
            plan.append(batch)
        for batch in self.shard(plan):
            if self.train_codes is None:
                yield torch.stack([self._crop(j, s) for j, s in batch])
            else:  # crops on codec-frame boundaries, with the codes the frozen encoder gave the whole utterance
                stack = self.model.cfg.stack
                starts = [(j, s - s % stack) for j, s in batch]
                yield (torch.stack([self._crop(j, s) for j, s in starts]),
                       torch.stack([self.train_codes[j][:, s // stack:(s + self.seg) // stack] for j, s in starts]))

    def _crop(self, j: int, start: int) -> torch.Tensor:
        m = self.train_mels[j]
        if m.shape[-1] <= self.seg:
            return F.pad(m, (0, self.seg - m.shape[-1]), value=self.model.cfg.mel.log_min)
        return m[:, start:start + self.seg]

    def loss(self, batch):
        dev = self.model.mel_mean.device
        if self.train_codes is None:
            out = self.model(batch.to(dev))
            recon_mel, target = out.recon, out.target
            recon = F.mse_loss(recon_mel, target)
            loss = recon + self.model.cfg.commitment * out.rvq.commit_loss + out.rvq.codebook_loss
            metrics = {"recon_mse": float(recon.detach()), "commit": float(out.rvq.commit_loss.detach()),
                       "perplexity_min": float(out.rvq.perplexity.min())}
        else:
            mel, codes = batch[0].to(dev), batch[1].to(dev)
            recon_mel = self.model.decode_latent(self.model.rvq.decode(codes))
            target = self.model.normalize(mel)
            loss = F.mse_loss(recon_mel, target)
            metrics = {"recon_mse": float(loss.detach())}
        if self.spectral_weight:
            spectral = spectral_contrast_loss(recon_mel, target)
            loss = loss + self.spectral_weight * spectral
            metrics["spectral"] = float(spectral.detach())
        return loss, metrics

    def evaluate(self) -> dict[str, float]:
        return codec_metrics(self.model, self.dev_mels)

    def export(self, path: Path) -> None:
        self.model.save(path)


def spectral_contrast_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of first differences along time and along frequency of mels [B, M, T] (sum of the two)."""
    dt = F.mse_loss(recon.diff(dim=-1), target.diff(dim=-1))
    df = F.mse_loss(recon.diff(dim=-2), target.diff(dim=-2))
    return dt + df


@torch.no_grad()
def codec_metrics(model, mels: list[torch.Tensor]) -> dict[str, float]:
    """Held-out reconstruction through the codes: standardised-mel MSE, raw log-mel MSE/L1, usage."""
    model.eval()
    dev = model.mel_mean.device
    se = se_raw = l1_raw = n = 0.0
    counts = torch.zeros(model.cfg.n_codebooks, model.cfg.codebook_size)
    for mel in mels:
        mel = mel.to(dev)[None]
        codes = model.encode_mel(mel)
        recon = model.decode_mel(codes)[..., : mel.shape[-1]]
        se += float(F.mse_loss(model.normalize(recon), model.normalize(mel), reduction="sum"))
        se_raw += float(F.mse_loss(recon, mel, reduction="sum"))
        l1_raw += float(F.l1_loss(recon, mel, reduction="sum"))
        n += mel.numel()
        for k in range(codes.shape[1]):
            counts[k] += torch.bincount(codes[0, k].cpu(), minlength=model.cfg.codebook_size).float()
    p = counts / counts.sum(1, keepdim=True).clamp(min=1)
    ppl = torch.exp(-(p * (p + 1e-10).log()).sum(1))
    out = {"score": se / n, "recon_mse": se / n, "logmel_mse": se_raw / n, "logmel_l1": l1_raw / n,
           "usage_min": float((counts > 0).float().mean(1).min()), "perplexity_mean": float(ppl.mean())}
    out.update({f"perplexity_{k}": float(v) for k, v in enumerate(ppl)})
    return out


@dataclass
class CodecRunConfig:
    """What `codectts train codec` trains (saved in each checkpoint's run.json)."""

    data: str = "data/corpus"
    preset: str = "seed"
    batch_size: int = 32
    segment_frames: int = 128
    max_dev: int = 100  # held-out utterances used for evaluation
    spectral_weight: float = 0.0  # time/frequency-difference MSE beside the mel MSE (0 = MSE only)
    init: str = ""  # codec part to start from (its config replaces the preset)
    freeze_codes: bool = False  # train only the decoder: codes stay those of `init`
    decoder_hidden: int = 0  # decoder width/depth overrides (0 = keep)
    decoder_res_blocks: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.spectral_weight < 0:
            raise ConfigError(f"spectral_weight must be >= 0, got {self.spectral_weight}")
        if self.freeze_codes and not self.init:
            raise ConfigError("--freeze-codes needs --init: the codec whose encoder and codebooks are kept")


def decoder_overrides(cfg, rc: CodecRunConfig):
    """`cfg` with the run's decoder width/depth where they are set (a preset's or an --init's)."""
    from dataclasses import replace

    over = {k: v for k, v in (("decoder_hidden", rc.decoder_hidden), ("decoder_res_blocks", rc.decoder_res_blocks))
            if v}
    return replace(cfg, **over)


def init_from(rc: CodecRunConfig):
    """A codec built from `rc.init`'s config (decoder overrides applied) with its encoder, codebooks and mel
    statistics; its decoder too when the shapes still match."""
    from codectts.codecs.mel_rvq import MelRVQCodec

    base = MelRVQCodec.load(rc.init)
    model = MelRVQCodec(decoder_overrides(base.cfg, rc))
    own, theirs = model.state_dict(), base.state_dict()
    keep = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape
            and (not k.startswith("proj_out.") or base.cfg.decoder_shape == model.cfg.decoder_shape)}
    model.load_state_dict(keep, strict=False)
    if rc.freeze_codes:
        model.proj_in.requires_grad_(False)
        model.rvq.requires_grad_(False)
    return model


def train_codec(rc: CodecRunConfig, tcfg: TrainConfig, resume: bool = False) -> dict[str, float]:
    """Mel statistics from the corpus, then the shared loop; returns the last evaluation."""
    from codectts.codecs.mel_rvq import MelRVQCodec
    from codectts.codecs.mel_rvq import preset as codec_preset
    from codectts.data.manifest import read_corpus
    from codectts.data.mels import corpus_mels

    model = init_from(rc) if rc.init else MelRVQCodec(decoder_overrides(codec_preset(rc.preset), rc))
    cfg = model.cfg
    utts, root = read_corpus(rc.data, "train")
    try:
        dev_utts, dev_root = read_corpus(rc.data, "dev")
    except DataError:
        random.Random(rc.seed).shuffle(utts)
        dev_utts, dev_root, utts = utts[:rc.max_dev], root, utts[rc.max_dev:]
    train_mels, _ = corpus_mels(utts, root, cfg.mel, progress=tcfg.progress, min_frames=cfg.stack)
    dev_mels, _ = corpus_mels(dev_utts[:rc.max_dev], dev_root, cfg.mel, progress=tcfg.progress,
                              min_frames=cfg.stack)
    if not train_mels or not dev_mels:
        raise DataError(f"{rc.data}: no usable audio for training/evaluation")
    if not rc.init:  # a codec from --init keeps the statistics its codes were made with
        allm = torch.cat(train_mels, dim=1)
        model.set_stats(allm.mean(1), allm.std(1))
    seg = max(cfg.stack, rc.segment_frames - rc.segment_frames % cfg.stack)
    train_codes = None
    if rc.freeze_codes:  # whole utterances long enough for one crop, padded to whole codec frames
        train_mels = [model.pad_to_stack(m[None])[0] for m in train_mels if m.shape[-1] >= seg]
        if not train_mels:
            raise DataError(f"{rc.data}: no training utterance has {seg} mel frames")
        train_codes = [model.encode_mel(m[None])[0] for m in train_mels]
    task = CodecTask(model, train_mels, dev_mels, rc.batch_size, seg, steps_per_epoch=1000, seed=rc.seed,
                     spectral_weight=rc.spectral_weight, train_codes=train_codes)
    trainer = Trainer(task, tcfg, run_config={"codec_run": asdict(rc), "codec": cfg.to_dict()})
    if resume:
        trainer.resume()
    return trainer.fit()


def register(app: typer.Typer) -> None:
    @recipe_command(app, "codec", out=Path("runs/codec"), max_steps=3000, lr=1e-3, warmup_steps=100,
                    weight_decay=0.0, batch_size=32, eval_every=500, save_every=500, precision="no", seed=0)
    def train_codec_cmd(opts: RunOptions, data: Path = data_option(),
                        preset: str = typer.Option("seed", help="Codec preset: seed, k4x512, k6x1024, k8x1024."),
                        segment_frames: int = typer.Option(128, help="Mel frames per training crop."),
                        max_dev: int = typer.Option(100, help="Held-out utterances used for evaluation."),
                        spectral_weight: float = typer.Option(
                            0.0, help="Weight of the time/frequency-difference MSE beside the mel MSE (0 = off)."),
                        init: str = typer.Option("", help="Codec part to start from (replaces --preset)."),
                        freeze_codes: bool = typer.Option(
                            False, help="Train only the decoder of --init: codes, and the models trained on them, "
                                        "stay valid."),
                        decoder_hidden: int = typer.Option(0, help="Decoder width (0 = as the preset or --init)."),
                        decoder_blocks: int = typer.Option(
                            0, help="Decoder residual blocks (0 = as the preset or --init).")):
        """Train a mel RVQ codec (checkpoints, --resume, JSONL/TensorBoard logs)."""
        rc = CodecRunConfig(data=str(data), preset=preset, batch_size=opts.batch_size, segment_frames=segment_frames,
                            max_dev=max_dev, spectral_weight=spectral_weight, init=init, freeze_codes=freeze_codes,
                            decoder_hidden=decoder_hidden, decoder_res_blocks=decoder_blocks, seed=opts.seed)
        typer.echo(json.dumps(train_codec(rc, opts.train_config(), resume=opts.resume)))

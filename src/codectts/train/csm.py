"""Recipe: `codectts train csm --codes CODES --preset small` (seed 004, CSM / Marvis).

Reads a code cache (`codectts codes extract`, any codec), builds sequences of segments (text, frames,
EOS frame; see `codectts.models.csm`), batches them dynamically (seed: at most 16 samples and 5,000
positions per batch), and trains backbone CE (codebook 0) + depth-decoder CE (codebooks 1..K-1) on the
shared loop (warmup + cosine LR, bf16 on a GPU that has it, checkpoints every N steps, --resume).

Voice cloning is learned the way it is used: with probability `context_prob` an utterance is preceded
by another utterance of the same speaker, so the model learns to continue in the voice of the context.

`--conditioning aligned` trains the aligned mode instead (models/csm.py): frames only, each told its
phoneme by the cache's teacher durations; no context prefix. `--length-model` (a duration part) then
gives the durations at inference and travels inside the released part as `length_model/`. With
`--speaker-vectors` each frame is also told its utterance's speaker vector (`codectts codes
speaker-vectors`), so the part clones the speaker of any clip it is given, as the cloning TRM does.
"""
from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import typer

from codectts.errors import ConfigError, DataError
from codectts.train.cli import RunOptions, codes_option, recipe_command
from codectts.train.loop import Task, TrainConfig, Trainer

log = logging.getLogger(__name__)

SEED_MAX_SAMPLES = 16  # seed 004: dynamic batches of at most 16 samples ...
SEED_MAX_TOKENS = 5000  # ... and 5,000 positions (text tokens + frames)
DEV_HOLDOUT = 50  # utterances held out when the cache has no dev split


@dataclass
class CSMRunConfig:
    """What `codectts train csm` trains (saved in each checkpoint's run.json); the loop's settings are a TrainConfig."""

    codes: str = "data/codes"
    preset: str = "small"
    n_codebooks: int = 0  # 0 = every codebook in the cache; fewer = the first n (e.g. 8 of Mimi's 32)
    tokenizer: str = "char"  # char | phoneme (phonemes from the cache's teacher alignments when present)
    batch_size: int = SEED_MAX_SAMPLES
    max_tokens: int = SEED_MAX_TOKENS
    context_prob: float = 0.5
    decoder_fraction: float = 1.0  # < 1: train the decoder on that share of frames (CSM uses 1/16)
    dropout: float = 0.0
    max_eval_batches: int = 20
    conditioning: str = "interleaved"  # interleaved (the seed's) | aligned (teacher durations; no context)
    prev_frame_dropout: float = 0.0  # aligned: share of previous frames hidden in training
    length_model: str | None = None  # aligned: the duration part that plans frames at inference
    speaker_vectors: bool = False  # aligned: condition on each utterance's speaker vector (cloning)
    init_from: str | None = None  # a trained CSM part to start from (fine-tuning; speaker conditioning may differ)
    seed: int = 0

    def __post_init__(self):
        if self.conditioning == "aligned" and self.tokenizer != "phoneme":
            raise ConfigError("--conditioning aligned needs --tokenizer phoneme (durations are per phoneme)")
        if self.conditioning == "aligned" and self.length_model is None:
            raise ConfigError("--conditioning aligned needs --length-model (a duration part: it plans the frames "
                              "at inference)")
        if self.speaker_vectors and self.conditioning != "aligned":
            raise ConfigError("--speaker-vectors needs --conditioning aligned (an interleaved CSM clones from its "
                              "context)")
        if self.tokenizer not in ("char", "phoneme"):
            raise ConfigError(f"tokenizer must be char or phoneme, got {self.tokenizer!r}")
        if not 0.0 <= self.context_prob <= 1.0:
            raise ConfigError(f"context_prob must be in [0, 1], got {self.context_prob}")
        if not 0.0 < self.decoder_fraction <= 1.0:
            raise ConfigError(f"decoder_fraction must be in (0, 1], got {self.decoder_fraction}")


@dataclass
class Utt:
    index: int  # row in its CodeCache
    text_ids: list[int]
    n_frames: int
    speaker: str
    durations: list[int] | None = None  # per text id, summing to n_frames (aligned mode)
    vector: np.ndarray | None = None  # the utterance's speaker vector (--speaker-vectors)

    @property
    def length(self) -> int:
        """Backbone positions: text tokens, frames, the EOS frame."""
        return len(self.text_ids) + self.n_frames + 1


def make_tokenizer(kind: str):
    from codectts.text.tokenizers import CharTokenizer, PhonemeTokenizer

    return CharTokenizer() if kind == "char" else PhonemeTokenizer()


def load_utts(cache, tokenizer, max_len: int, durations: bool = False, vectors: bool = False) -> list[Utt]:
    """Index entries with their text ids (and, with `durations`, their teacher durations; with `vectors`,
    their speaker vectors); drop (with a warning) those that cannot be used."""
    from codectts.data.speaker_vectors import read_speaker_vector
    from codectts.errors import TextError

    utts, skipped = [], 0
    for i, e in enumerate(cache.entries):
        try:
            if tokenizer.kind == "phoneme" and e.phonemes:
                ids = [tokenizer.index[p] for p in e.phonemes]  # teacher phonemes, framed by ^ ... $
            else:
                ids = tokenizer.encode(e.text)
        except (TextError, KeyError) as err:
            log.warning("skip %s: %s", e.id, err)
            skipped += 1
            continue
        u = Utt(i, ids, e.n_frames, e.speaker)
        if durations:
            if not e.durations or len(e.durations) != len(ids) or sum(e.durations) != e.n_frames:
                skipped += 1
                continue
            u.durations = list(e.durations)
        if vectors:
            u.vector = read_speaker_vector(cache.root, e.id)
            if u.vector is None:
                skipped += 1
                continue
        if u.n_frames < 1 or u.length > max_len:
            skipped += 1
            continue
        utts.append(u)
    if skipped:
        log.warning("%s split: skipped %d of %d utterances (no frames, untokenizable, no alignment or speaker "
                    "vector when needed, or longer than %d positions)",
                    cache.split, skipped, len(cache.entries), max_len)
    return utts


def pair_contexts(utts: list[Utt], prob: float, max_len: int, rng: random.Random) -> list[int | None]:
    """For each utterance, the index (into `utts`) of a same-speaker context utterance, or None."""
    by_speaker: dict[str, list[int]] = {}
    for j, u in enumerate(utts):
        by_speaker.setdefault(u.speaker, []).append(j)
    out: list[int | None] = []
    for i, u in enumerate(utts):
        ctx = None
        pool = by_speaker[u.speaker]
        if prob > 0 and len(pool) > 1 and rng.random() < prob:
            for _ in range(4):  # a few tries to find one that fits
                j = pool[rng.randrange(len(pool))]
                if j != i and u.length + utts[j].length <= max_len:
                    ctx = j
                    break
        out.append(ctx)
    return out


class CSMTask(Task):
    def __init__(self, model, cache, train: list[Utt], dev: list[Utt], dev_cache, rc: CSMRunConfig,
                 tokenizer, export_meta: dict):
        self.model, self.cache, self.dev_cache, self.rc = model, cache, dev_cache, rc
        self.train, self.dev = train, dev
        self.tokenizer, self.export_meta = tokenizer, export_meta
        self.k = model.cfg.n_codebooks
        self._codec = None

    @property
    def core(self):
        """The CSM module itself (accelerate may wrap it for several GPUs)."""
        model = self.model
        while hasattr(model, "module"):
            model = model.module
        return model

    @property
    def device(self) -> torch.device:
        return self.core.c0_head.weight.device

    def _sequence(self, cache, u: Utt, ctx: Utt | None):
        from codectts.models.csm import Segment, build_sequence

        if self.core.cfg.aligned:  # (codes [K, F], text ids, durations, vector or None): collated by _batch
            return cache.codes(u.index)[: self.k], u.text_ids, u.durations, u.vector
        segs = [] if ctx is None else [Segment(ctx.text_ids, cache.codes(ctx.index))]
        segs.append(Segment(u.text_ids, cache.codes(u.index)))
        return build_sequence(segs, self.k, self.core.cfg.eos_code)

    def _batch(self, seqs) -> tuple[torch.Tensor, ...]:
        from codectts.models.csm import collate

        batch = collate_aligned(seqs) if self.core.cfg.aligned else collate(seqs)
        return tuple(t.to(self.device) for t in batch)

    def epoch_plan(self, epoch: int) -> tuple[list[list[int]], list[int | None]]:
        """(batches of indices into self.train, context per item), a pure function of (seed, epoch)."""
        from codectts.data.sampler import DynamicBatchSampler

        rng = random.Random(f"csm-context:{self.rc.seed}:{epoch}")
        prob = 0.0 if self.core.cfg.aligned else self.rc.context_prob
        ctx = pair_contexts(self.train, prob, min(self.rc.max_tokens, self.core.cfg.max_seq_len), rng)
        lengths = [u.length + (self.train[c].length if c is not None else 0)
                   for u, c in zip(self.train, ctx, strict=True)]
        sampler = DynamicBatchSampler(
            lengths, max_samples=self.rc.batch_size, max_tokens=self.rc.max_tokens, seed=self.rc.seed
        )
        return sampler.batches(epoch), ctx

    def train_batches(self, epoch: int) -> Iterator:
        batches, ctx = self.epoch_plan(epoch)
        for idx in self.shard(batches):
            yield self._batch(
                [
                    self._sequence(self.cache, self.train[i], self.train[ctx[i]] if ctx[i] is not None else None)
                    for i in idx
                ]
            )

    def _metrics(self, out, prefix: str = "") -> dict[str, float]:
        m = {
            f"{prefix}backbone_loss": float(out.backbone_loss.detach()),
            f"{prefix}decoder_loss": float(out.decoder_loss.detach()),
        }
        m.update({f"{prefix}acc_c{k}": a for k, a in enumerate(out.accuracy) if math.isfinite(a)})
        return m

    def loss(self, batch):
        out = self.model(*batch, decoder_fraction=self.rc.decoder_fraction)
        return out.loss, self._metrics(out)

    def evaluate(self) -> dict[str, float]:
        """Held-out loss and per-codebook accuracy, no context prefix, every frame through the decoder."""
        if not self.dev:
            return {}
        sums: dict[str, float] = {}
        n_batches = 0
        order = sorted(range(len(self.dev)), key=lambda i: self.dev[i].length)
        batch: list[int] = []
        batches = []
        for i in order:  # deterministic length-sorted batches under the same bounds as training
            if batch and (
                len(batch) + 1 > self.rc.batch_size or (len(batch) + 1) * self.dev[i].length > self.rc.max_tokens
            ):
                batches.append(batch)
                batch = []
            batch.append(i)
        batches.append(batch)
        for idx in batches[: self.rc.max_eval_batches]:
            out = self.model(*self._batch([self._sequence(self.dev_cache, self.dev[i], None) for i in idx]))
            for k, v in {"dev_loss": float(out.loss), **self._metrics(out, "dev_")}.items():
                sums[k] = sums.get(k, 0.0) + v
            n_batches += 1
        res = {k: v / n_batches for k, v in sums.items()}
        res["score"] = res["dev_loss"]
        return res

    def export(self, path: Path) -> None:
        """The part; an aligned CSM's duration model travels inside it (`length_model/`)."""
        from codectts.models.length import bundle_length_model

        extra, files = self.export_meta, None
        if extra.get("length"):
            length, files = bundle_length_model(extra["length"])
            extra = {**extra, "length": length}
        self.core.save(path, extra=extra, files=files)

    def sample(self, out_dir: Path, step: int) -> None:
        """Codes (and a wav when the cache's codec can be loaded here) for two held-out texts."""
        from codectts.infer.csm import CSMGenerator

        out_dir.mkdir(parents=True, exist_ok=True)
        codec = self._sample_codec()
        length = None
        if self.export_meta.get("length"):
            from codectts.models.length import length_source_from_dict

            length = length_source_from_dict(self.export_meta["length"])
        gen = CSMGenerator(self.core, codec, self.tokenizer, length,
                           speaker_vectors=self.export_meta.get("speaker_vectors"))
        for n, u in enumerate(self.dev[:2]):
            text = self.dev_cache.entries[u.index].text
            res = gen.generate(text, seed=step + n, max_frames=2 * u.n_frames + 10)
            np.save(out_dir / f"{n}.npy", res.codes.numpy())
            if res.wav is not None:
                from codectts.audio.io import save_wav

                save_wav(out_dir / f"{n}.wav", res.wav.numpy(), res.sample_rate)
            (out_dir / f"{n}.json").write_text(
                json.dumps({"text": text, "frames": res.codes.shape[1], "stopped": res.stopped})
            )

    def _sample_codec(self):
        if self._codec is None:
            try:
                from codectts.codecs.registry import load_codec

                codec = load_codec(self.export_meta["codec"], root=self.cache.root)
                self._codec = codec if codec.n_codebooks == self.k else False
            except Exception as e:  # samples are optional: codes are written regardless
                log.info("samples are codes only (codec not loadable here: %s)", str(e)[:120])
                self._codec = False
        return self._codec or None


def collate_aligned(items) -> tuple[torch.Tensor, ...]:
    """[(codes [K, F], ids, durations[, vector [V] or None])] -> (codes [B, K, F], frame lengths, text [B, P],
    text lengths, durations [B, P][, vectors [B, V]]), right-padded (padded durations are 0)."""
    b, k = len(items), items[0][0].shape[0]
    f, p = max(it[0].shape[1] for it in items), max(len(it[1]) for it in items)
    codes = torch.zeros(b, k, f, dtype=torch.long)
    text = torch.zeros(b, p, dtype=torch.long)
    durations = torch.zeros(b, p, dtype=torch.long)
    for row, (c, ids, d, *_) in enumerate(items):
        codes[row, :, : c.shape[1]] = c
        text[row, : len(ids)] = torch.tensor(ids)
        durations[row, : len(d)] = torch.tensor(d)
    batch = (codes, torch.tensor([it[0].shape[1] for it in items]), text,
             torch.tensor([len(it[1]) for it in items]), durations)
    vectors = [it[3] if len(it) > 3 else None for it in items]
    if any(v is None for v in vectors):
        return batch
    return (*batch, torch.from_numpy(np.stack(vectors)).float())


def train_csm(rc: CSMRunConfig, tcfg: TrainConfig, resume: bool = False) -> dict:
    from codectts.data.codecache import CodeCache
    from codectts.data.speaker_vectors import speaker_means, vector_size
    from codectts.models.csm import CSM
    from codectts.models.csm import preset as csm_preset

    cache = CodeCache(rc.codes, "train")
    if len(cache) == 0:
        raise DataError(f"{rc.codes}: the code cache's training split is empty")
    k = rc.n_codebooks or cache.n_codebooks
    if not 2 <= k <= cache.n_codebooks:
        raise ConfigError(f"--n-codebooks must be in 2..{cache.n_codebooks} for {rc.codes}, got {k}")
    tokenizer = make_tokenizer(rc.tokenizer)
    cfg = csm_preset(
        rc.preset,
        text_vocab_size=tokenizer.vocab_size,
        n_codebooks=k,
        codebook_size=cache.codebook_size,
        dropout=rc.dropout,
        conditioning=rc.conditioning,
        prev_frame_dropout=rc.prev_frame_dropout,
        speaker_vector_dim=vector_size(rc.codes) if rc.speaker_vectors else 0,
    )
    aligned = cfg.aligned
    max_len = min(rc.max_tokens, cfg.max_seq_len)
    train = load_utts(cache, tokenizer, max_len, durations=aligned, vectors=rc.speaker_vectors)
    dev_cache = CodeCache(rc.codes, "dev")
    dev = (load_utts(dev_cache, tokenizer, max_len, durations=aligned, vectors=rc.speaker_vectors)
           if len(dev_cache) else [])
    if not dev:
        n = min(DEV_HOLDOUT, len(train) // 10)
        dev, train, dev_cache = train[:n], train[n:], cache
    if not train:
        raise DataError(f"{rc.codes}: no usable training utterances")
    torch.manual_seed(rc.seed)
    model = CSM(cfg)
    if rc.init_from:  # a --resume that finds a checkpoint overwrites these weights with the run's own
        model.init_from(rc.init_from, adaptable=("speaker_vector_dim",))  # e.g. joe-csm -> cloning
    codec_spec = dict(cache.meta.get("codec") or {})
    if codec_spec.get("type") == "mimi":  # Mimi decodes any prefix of its codebooks: record the one used
        codec_spec["n_codebooks"] = k
    meta = {
        "tokenizer": tokenizer.to_dict(),
        "codec": codec_spec,
        "frame_rate": cache.frame_rate,
        "sample_rate": cache.meta.get("sample_rate"),
        "preset": rc.preset,
    }
    if rc.speaker_vectors:  # a training speaker by name = its mean vector; a clip of anyone = that clip's vector
        meta["speakers"] = sorted({u.speaker for u in train})
        meta["speaker_vectors"] = speaker_means([u.vector for u in train], [u.speaker for u in train])
    if aligned:
        from codectts.models.length import DurationLength

        meta["length"] = DurationLength(Path(rc.length_model).resolve(), frame_rate=cache.frame_rate,
                                        max_frames=cfg.max_seq_len).to_dict()
    task = CSMTask(model, cache, train, dev, dev_cache, rc, tokenizer, meta)
    counts = model.param_counts()
    log.info(
        "csm %s: backbone %.2fM + decoder %.2fM (%.2fM total), %d x %d codes, %d train / %d dev utterances",
        rc.preset,
        counts["backbone"] / 1e6,
        counts["decoder"] / 1e6,
        counts["total"] / 1e6,
        k,
        cache.codebook_size,
        len(train),
        len(dev),
    )
    trainer = Trainer(task, tcfg, run_config={"csm": asdict(rc), "model": cfg.to_dict(), "params": counts})
    if resume:
        trainer.resume()
    return trainer.fit()


def register(app: typer.Typer) -> None:
    @recipe_command(app, "csm", out=Path("runs/csm"), max_steps=20_000, lr=3e-4, warmup_steps=200,
                    weight_decay=0.01, batch_size=SEED_MAX_SAMPLES, log_every=25, eval_every=500, save_every=500,
                    sample_every=0, precision="auto", seed=0)
    def csm_cmd(
        opts: RunOptions,
        codes: Path = codes_option(),
        preset: str = typer.Option("small", help="Model size: tiny | small | marvis."),
        n_codebooks: int = typer.Option(0, help="Use the first N codebooks of the cache (0 = all)."),
        tokenizer: str = typer.Option("char", help="char | phoneme."),
        max_tokens: int = typer.Option(SEED_MAX_TOKENS, help="Dynamic batching: positions per batch."),
        context_prob: float = typer.Option(0.5, help="Share of items preceded by a same-speaker utterance."),
        decoder_fraction: float = typer.Option(1.0, help="Share of frames the depth decoder trains on."),
        conditioning: str = typer.Option("interleaved", help="interleaved (the seed's: text then frames, the "
                                         "model finds the alignment) | aligned (each frame told its phoneme by "
                                         "the cache's durations; needs --tokenizer phoneme and --length-model)."),
        length_model: Path | None = typer.Option(None, help="Aligned: the duration part that plans frames at "
                                                 "inference; copied into the released part."),
        dropout: float = typer.Option(0.0, help="Dropout in both transformers."),
        prev_frame_dropout: float = typer.Option(0.0, help="Aligned: hide this share of previous frames in "
                                                 "training, so the model leans on the text (the Talker uses 0.1)."),
        speaker_vectors: bool = typer.Option(False, "--speaker-vectors", help="Aligned: condition every frame on "
                                             "its utterance's speaker vector (`codectts codes speaker-vectors`), "
                                             "so the voice clones a reference clip (say --reference)."),
        init_from: Path | None = typer.Option(None, help="Start from this trained CSM part (fine-tuning); a "
                                              "single-speaker part may become a --speaker-vectors one."),
    ):
        """Train a CSM / Marvis-style model (backbone + depth decoder) on a code cache."""
        rc = CSMRunConfig(codes=str(codes), preset=preset, n_codebooks=n_codebooks, tokenizer=tokenizer,
                          batch_size=opts.batch_size, max_tokens=max_tokens, context_prob=context_prob,
                          decoder_fraction=decoder_fraction, dropout=dropout, conditioning=conditioning,
                          prev_frame_dropout=prev_frame_dropout,
                          length_model=str(length_model) if length_model else None, speaker_vectors=speaker_vectors,
                          init_from=str(init_from) if init_from else None, seed=opts.seed)
        typer.echo(json.dumps(train_csm(rc, opts.train_config(), resume=opts.resume), indent=1))

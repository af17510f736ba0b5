"""Recipe: `codectts train trm --codes CODES --out RUN` (seed 003, the TTS TRM).

Reads a code cache (any codec: K and N come from its cache.json), tokenizes the text once
(characters, or espeak phonemes), batches by frame count, and trains through the shared Trainer
(checkpoints, --resume, JSONL/TensorBoard logs, --max-minutes). Every `--sample-every` steps it
writes `samples/step_XXXXXXX/sample_N_generated.npy` (codes [K, F]) and, when the cache's codec can
be loaded with a decoder, `sample_N_generated.wav`, plus `info.json`.

The exported part (`RUN/best`, `RUN/last`) carries what inference needs beside the weights:
tokenizer, speaker names, the length source (a character rate fitted on the training set) and the
codec spec; `codectts.infer.trm.TRMGenerator.load(RUN/best)` reads it.
"""
from __future__ import annotations

import io
import json
import logging
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import typer

from codectts.errors import CodecTTSError, ConfigError, DataError, TextError
from codectts.models.sampling import SamplingConfig
from codectts.train.cli import RunOptions, codes_option, recipe_command
from codectts.train.loop import Task, TrainConfig, Trainer, check_run_folder, world_size

log = logging.getLogger(__name__)
DEFAULT_SAMPLING = SamplingConfig()

RUN_META = "trm_run.json"  # model config + tokenizer + speakers, fixed at the first start (for --resume)
PROMPT_SEP = "|"
DEFAULT_MAX_BATCH_FRAMES = 4000


@dataclass
class TRMBatch:
    text_ids: torch.Tensor  # [B, S] padded with PAD_ID
    text_lengths: torch.Tensor  # [B]
    speaker: torch.Tensor  # [B]
    frame_lengths: torch.Tensor  # [B]
    codes: torch.Tensor  # [B, K, F] padded with 0 (masked by frame_lengths)
    frame_positions: torch.Tensor | None = None  # [B, F] from teacher durations (--align durations)
    speaker_vector: torch.Tensor | None = None  # [B, V] each item's own speaker vector (--speaker-vectors)

    def to(self, device) -> TRMBatch:
        return TRMBatch(*(t.to(device) if t is not None else None
                          for t in (self.text_ids, self.text_lengths, self.speaker, self.frame_lengths, self.codes,
                                    self.frame_positions, self.speaker_vector)))

    def model_args(self) -> tuple:
        return self.text_ids, self.text_lengths, self.speaker, self.frame_lengths, self.codes


@dataclass
class Prompt:
    text: str
    speaker: int
    n_frames: int | None = None  # None: from the length source
    cache_index: int | None = None  # a dev item: its codes are the ground truth
    durations: list[int] | None = None  # a dev item of a --align durations run: the teacher's


class TRMData:
    """The usable items of one code cache split: text ids, speaker index, frame count (codes read lazily).

    With `durations=True` the text is the cache's teacher phonemes (one id each, strictly) and each
    item keeps its teacher durations, which place every frame on its phoneme. With `vectors=True` each
    item keeps its speaker vector (`codectts codes speaker-vectors`); items without one are skipped."""

    def __init__(self, cache, tokenizer, speakers: list[str], max_frames: int, max_text_len: int,
                 durations: bool = False, vectors: bool = False):
        from codectts.data.speaker_vectors import read_speaker_vector

        self.cache = cache
        self.index: list[int] = []
        self.ids: list[list[int]] = []
        self.speaker: list[int] = []
        self.durations: list[list[int]] | None = [] if durations else None
        self.vectors: list[np.ndarray] | None = [] if vectors else None
        skipped = {"text": 0, "speaker": 0, "too_long": 0, "alignment": 0, "vector": 0}
        spk_index = {s: i for i, s in enumerate(speakers)}
        for i, e in enumerate(cache.entries):
            if e.speaker not in spk_index:
                skipped["speaker"] += 1
                continue
            if e.n_frames < 1 or e.n_frames > max_frames:
                skipped["too_long"] += 1
                continue
            if durations:
                if (not e.durations or len(e.durations) != len(e.phonemes) or sum(e.durations) != e.n_frames
                        or any(u not in tokenizer.index for u in e.phonemes)):
                    skipped["alignment"] += 1
                    continue
                ids = [tokenizer.index[u] for u in e.phonemes]
            else:
                try:
                    ids = tokenizer.encode(e.text)
                except TextError:
                    skipped["text"] += 1
                    continue
            if len(ids) > max_text_len:
                skipped["too_long"] += 1
                continue
            vec = read_speaker_vector(cache.root, e.id) if vectors else None
            if vectors and vec is None:
                skipped["vector"] += 1
                continue
            if self.vectors is not None:
                self.vectors.append(vec)
            self.index.append(i)
            self.ids.append(ids)
            self.speaker.append(spk_index[e.speaker])
            if self.durations is not None:
                self.durations.append(list(e.durations))
        if any(skipped.values()):
            log.warning("%s: skipped %s (of %d)", cache.root, skipped, len(cache.entries))
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.index)

    def n_frames(self, j: int) -> int:
        return self.cache.entries[self.index[j]].n_frames

    def text(self, j: int) -> str:
        return self.cache.entries[self.index[j]].text

    def lengths(self) -> list[int]:
        return [self.n_frames(j) for j in range(len(self))]

    def collate(self, js: list[int]) -> TRMBatch:
        b = len(js)
        s = max(len(self.ids[j]) for j in js)
        f = max(self.n_frames(j) for j in js)
        k = self.cache.n_codebooks
        text = torch.zeros(b, s, dtype=torch.long)  # PAD_ID = 0
        codes = torch.zeros(b, k, f, dtype=torch.long)
        for row, j in enumerate(js):
            text[row, :len(self.ids[j])] = torch.tensor(self.ids[j])
            c = self.cache.codes(self.index[j])
            codes[row, :, :c.shape[1]] = c
        positions = None
        if self.durations is not None:
            from codectts.models.trm import positions_from_durations

            positions = torch.zeros(b, f)  # padded frames: masked, any value
            for row, j in enumerate(js):
                positions[row, :self.n_frames(j)] = positions_from_durations(self.durations[j])
        vectors = None if self.vectors is None else torch.from_numpy(np.stack([self.vectors[j] for j in js]))
        return TRMBatch(text, torch.tensor([len(self.ids[j]) for j in js]), torch.tensor([self.speaker[j] for j in js]),
                        torch.tensor([self.n_frames(j) for j in js]), codes, positions, vectors)

    def speaker_means(self, speakers: list[str]) -> dict[str, list[float]]:
        """Each speaker's mean unit speaker vector: how a cloning model speaks as a training speaker by name."""
        from codectts.data.speaker_vectors import speaker_means

        if not self.vectors:
            return {}
        means = speaker_means(self.vectors, [speakers[k] for k in self.speaker])
        return {name: means[name] for name in speakers if name in means}


def read_prompts(path: str | Path) -> list[tuple[str | None, str]]:
    """`speaker|text` or plain `text` per line; blank lines and `#` comments skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable prompts file ({e})") from None
    out: list[tuple[str | None, str]] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        speaker, sep, text = line.partition(PROMPT_SEP)
        if not sep:
            speaker, text = None, line
        speaker, text = (speaker.strip() or None) if speaker is not None else None, text.strip()
        if not text:
            raise DataError(f"{path}:{n}: prompt has no text")
        out.append((speaker, text))
    if not out:
        raise DataError(f"{path}: no prompts")
    return out


def resolve_speaker(speaker: str | int | None, speakers: list[str], where: str) -> int:
    """A speaker name from the corpus, or an index into the speaker list; None = the first."""
    if speaker is None:
        return 0
    if str(speaker) in speakers:
        return speakers.index(str(speaker))
    try:
        idx = int(speaker)
    except ValueError:
        raise DataError(f"{where}: unknown speaker {speaker!r} (known: {speakers[:10]})") from None
    if not 0 <= idx < len(speakers):
        raise DataError(f"{where}: speaker index {idx} out of range [0, {len(speakers)})")
    return idx


def load_decoder(spec: dict | None):
    """The cache's codec with a waveform decoder, or None (logged) when it cannot be loaded here."""
    if not spec:
        return None
    try:
        from codectts.codecs.registry import load_codec

        codec = load_codec(spec)
        if getattr(codec, "vocoder", False) is None:  # a mel codec without its vocoder: Griffin-Lim needs no weights
            from codectts.vocoders import GriffinLim

            codec.vocoder = GriffinLim(codec.cfg.mel)
        return codec
    except (ImportError, CodecTTSError, OSError) as e:
        log.warning("samples: no decoder for codec %s (%s); writing codes only", spec.get("type"), e)
        return None


def codec_quantizer(spec: dict | None):
    """The codec's `ResidualVQ` (frozen), or None when it has none (Mimi) or cannot load here."""
    if not spec or spec.get("type") != "mel_rvq":
        return None
    from codectts.codecs.registry import load_codec

    try:
        return load_codec(spec).rvq.float().requires_grad_(False)
    except (CodecTTSError, OSError) as e:
        log.warning("codec %s: no codebooks for the latent error (%s)", spec.get("path"), e)
        return None


def latent_variance(data: TRMData, rvq, n_items: int = 200) -> float:
    """Per-dimension variance of the true codes' latents over the first items: the latent error divided by
    it is 1 for a model that predicts the mean latent everywhere, whatever the codec's scale."""
    with torch.no_grad():
        lat = torch.cat([rvq.decode(data.cache.codes(i)[None])[0] for i in data.index[:n_items]])
    return float(lat.var(0).mean())


def _save_npy(path: Path, arr: np.ndarray) -> None:
    from codectts.fileio import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())




class TRMTask(Task):
    def __init__(self, model, train: TRMData, dev: TRMData, extra: dict, batch_size: int, max_batch_frames: int,
                 seed: int, prompts: list[Prompt], sampling: dict, max_dev_batches: int | None = None,
                 rvq=None, latent_weight: float = 0.0):
        self.model = model
        self.train, self.dev = train, dev
        self.extra = extra
        self.sampler = _sampler(train.lengths(), batch_size, max_batch_frames, seed, shuffle=True)
        self.dev_batches = _sampler(dev.lengths(), batch_size, max_batch_frames, seed, shuffle=False).batches(0)
        if max_dev_batches is not None:
            self.dev_batches = self.dev_batches[:max_dev_batches]
        self.prompts, self.sampling = prompts, sampling
        self._decoder = None
        self._decoder_loaded = False
        self._unigram: torch.Tensor | None = None
        if latent_weight and rvq is None:
            raise ConfigError("--latent-weight needs a mel RVQ codec whose codebooks load (the cache's codec)")
        self.rvq, self.latent_weight = rvq, latent_weight  # rvq: the cache's codec's quantizer (latent_nmse)
        self.latent_scale = latent_variance(train, rvq) if rvq is not None else 1.0

    def latent_nmse(self, logits: torch.Tensor, b: TRMBatch) -> torch.Tensor:
        from codectts.models.trm import latent_error

        return latent_error(logits, b.codes, b.frame_lengths, self.rvq.to(logits.device)) / self.latent_scale

    @property
    def device(self):
        return next(self.model.parameters()).device

    def train_batches(self, epoch: int):
        for js in self.shard(self.sampler.batches(epoch)):
            yield self.train.collate(js)

    def loss(self, batch: TRMBatch):
        b = batch.to(self.device)
        out = self.model(*b.model_args(), frame_positions=b.frame_positions, speaker_vector=b.speaker_vector)
        logs = {"ce_0": float(out.codebook_loss[0].detach()), "acc_0": float(out.codebook_accuracy[0]),
                "acc_mean": float(out.codebook_accuracy.mean()), "frames": float(b.frame_lengths.sum())}
        if not self.latent_weight:
            return out.loss, logs
        nmse = self.latent_nmse(out.logits, b)
        logs.update(ce=float(out.loss.detach()), latent=float(nmse.detach()))
        return out.loss + self.latent_weight * nmse, logs

    def evaluate(self) -> dict[str, float]:
        """Held-out loss, CE and accuracy per codebook, plus two yardsticks: the CE of a unigram model
        of the training codes (what a model ignoring text and position gets) and the loss with each
        item's text swapped for a neighbour's of similar length (`text_gain` > 0: the model reads the text)."""
        k = self.train.cache.n_codebooks
        ce, acc, frames, weighted, latent = torch.zeros(k), torch.zeros(k), 0.0, 0.0, 0.0
        wrong, wrong_frames = 0.0, 0.0
        for js in self.dev_batches:
            b = self.dev.collate(js).to(self.device)
            out = self.model(*b.model_args(), frame_positions=b.frame_positions, speaker_vector=b.speaker_vector)
            n = float(b.frame_lengths.sum())
            ce += out.codebook_loss.float().cpu() * n
            acc += out.codebook_accuracy.float().cpu() * n
            weighted += float(out.loss) * n
            if self.rvq is not None:
                latent += float(self.latent_nmse(out.logits, b)) * n
            frames += n
            if len(js) > 1:  # batches are length-sorted: the neighbour's text has a similar length
                swapped = self.model(b.text_ids.roll(1, 0), b.text_lengths.roll(1, 0), b.speaker, b.frame_lengths,
                                     b.codes, frame_positions=b.frame_positions, speaker_vector=b.speaker_vector)
                wrong += float(swapped.loss) * n
                wrong_frames += n
        if not frames:
            return {}
        ce, acc = ce / frames, acc / frames
        metrics = {"score": weighted / frames, "loss": weighted / frames, "ce_mean": float(ce.mean()),
                   "acc_mean": float(acc.mean())}
        if self.rvq is not None:  # what soft decoding plays: 1 = the mean latent everywhere
            metrics["latent_nmse"] = latent / frames
            metrics["score"] += self.latent_weight * metrics["latent_nmse"]
        if wrong_frames:
            metrics["loss_wrong_text"] = wrong / wrong_frames
            metrics["text_gain"] = metrics["loss_wrong_text"] - metrics["loss"]
        metrics.update({f"ce_{i}": float(v) for i, v in enumerate(ce)})
        metrics.update({f"acc_{i}": float(v) for i, v in enumerate(acc)})
        metrics.update({f"unigram_ce_{i}": float(v) for i, v in enumerate(self.unigram_ce())})
        return metrics

    def unigram_ce(self) -> torch.Tensor:
        """[K] CE of the held-out codes under each codebook's training-code frequencies (add-one smoothed)."""
        if self._unigram is None:
            k, n = self.train.cache.n_codebooks, self.train.cache.codebook_size
            counts = torch.ones(k, n, dtype=torch.float64)
            for i in self.train.index:
                c = self.train.cache.codes(i)  # [K, F]
                counts.scatter_add_(1, c, torch.ones_like(c, dtype=torch.float64))
            logp = (counts / counts.sum(1, keepdim=True)).log()
            nll, total = torch.zeros(k, dtype=torch.float64), 0
            for i in self.dev.index:
                c = self.dev.cache.codes(i)
                nll -= logp.gather(1, c).sum(1)
                total += c.shape[1]
            self._unigram = (nll / max(1, total)).float()
        return self._unigram

    def export(self, path: Path) -> None:
        """The TRM part; a duration-model length source travels inside it (`length_model/`)."""
        from codectts.models.length import bundle_length_model

        length, files = bundle_length_model(self.extra["length"])
        _unwrap(self.model).save(path, extra={**self.extra, "length": length}, files=files)

    def sample(self, out_dir: Path, step: int) -> None:
        from codectts.audio.io import save_wav
        from codectts.infer.trm import generate
        from codectts.models.length import length_source_from_dict
        from codectts.text.tokenizers import tokenizer_from_dict

        if not self.prompts:
            return
        if not self._decoder_loaded:
            self._decoder, self._decoder_loaded = load_decoder(self.extra.get("codec")), True
        model = _unwrap(self.model)
        tok = tokenizer_from_dict(self.extra["tokenizer"])
        length = length_source_from_dict(self.extra["length"])
        out_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for n, p in enumerate(self.prompts, 1):
            rec = {"text": p.text, "speaker": self.extra["speakers"][p.speaker]}
            try:
                given = p.durations is not None
                text = [tok.index[u] for u in self.dev.cache.entries[p.cache_index].phonemes] if given else p.text
                vectors = self.extra.get("speaker_vectors")
                codes = generate(model, text, p.speaker, n_frames=None if given else p.n_frames,
                                 length_source=None if p.n_frames or given else length, tokenizer=tok,
                                 durations=p.durations, speaker_vector=vectors[rec["speaker"]] if vectors else None,
                                 seed=self.sampling["seed"] + n,
                                 sampling=SamplingConfig.from_dict({k: v for k, v in self.sampling.items()
                                                                    if k != "seed"}))
            except CodecTTSError as e:  # e.g. a prompt longer than max_frames: report it, keep training
                log.warning("sample %d (%r): %s", n, p.text[:40], e)
                records.append({**rec, "error": str(e)})
                continue
            _save_npy(out_dir / f"sample_{n}_generated.npy", codes.cpu().numpy().astype(np.int64))
            rec.update(n_frames=int(codes.shape[1]), codes=f"sample_{n}_generated.npy")
            if p.cache_index is not None:
                gt = out_dir.parent / f"sample_{n}_ground_truth.npy"
                if not gt.exists():
                    _save_npy(gt, self.dev.cache.codes(p.cache_index).numpy())
                rec["ground_truth"] = f"../{gt.name}"
            if self._decoder is not None:
                try:
                    wav = self._decoder.decode(codes[None].to("cpu"))[0].cpu().numpy()
                    save_wav(out_dir / f"sample_{n}_generated.wav", wav, self._decoder.sample_rate)
                    rec["wav"] = f"sample_{n}_generated.wav"
                    gt_wav = out_dir.parent / f"sample_{n}_ground_truth.wav"
                    if p.cache_index is not None and not gt_wav.exists():
                        ref = self.dev.cache.codes(p.cache_index)[None]
                        save_wav(gt_wav, self._decoder.decode(ref)[0].cpu().numpy(), self._decoder.sample_rate)
                except CodecTTSError as e:
                    log.warning("sample %d: decoding failed (%s)", n, e)
            records.append(rec)
        info = {"step": step, **self.sampling, "codec": (self.extra.get("codec") or {}).get("type"),
                "wavs": self._decoder is not None, "samples": records}
        from codectts.fileio import atomic_write_bytes

        atomic_write_bytes(out_dir / "info.json", json.dumps(info, indent=1, ensure_ascii=False).encode("utf-8"))


def _unwrap(model):
    return getattr(model, "module", model)


def _sampler(lengths, batch_size, max_batch_frames, seed, shuffle):
    from codectts.data.sampler import DynamicBatchSampler

    return DynamicBatchSampler(lengths, max_samples=batch_size, max_tokens=max_batch_frames, seed=seed,
                               shuffle=shuffle)


def open_splits(codes: Path, max_dev: int, seed: int):
    """(train cache, dev cache, dev indices): the cache's dev split when it has one, else held-out train items."""
    from codectts.data.codecache import CodeCache

    train = CodeCache(codes)
    if not len(train):
        raise DataError(f"{codes}: the code cache holds no utterances")
    if (codes / "dev.jsonl").exists():
        dev = CodeCache(codes, split="dev")
        if len(dev):
            return train, dev, None
    held = sorted(random.Random(seed).sample(range(len(train)), min(max_dev, max(1, len(train) // 4))))
    return train, train, held


def build_tokenizer(kind: str):
    from codectts.text import CharTokenizer, PhonemeTokenizer

    if kind == "char":
        return CharTokenizer()
    if kind == "phoneme":
        return PhonemeTokenizer()
    raise ConfigError(f"--text must be char or phoneme, got {kind!r}")


# What `--init-from` may change: the speaker conditioning (a single-speaker part seeds a cloning one) and the
# codec's codebooks (a part trained on one codec seeds a model for another: the text encoder and recursive
# blocks carry over, the per-codebook embeddings and output heads start afresh).
INIT_ADAPTABLE = ("n_speakers", "speaker_vector_dim", "n_codebooks", "codebook_size")


@dataclass
class TRMRunConfig:
    """What `codectts train trm` trains (saved in each checkpoint's run.json); the loop's settings are a TrainConfig,
    whose max_steps/max_epochs/warmup this recipe sets from `max_steps`/`epochs` and the data."""

    codes: str = "data/codes"
    preset: str = "small"
    text: str = "char"  # char | phoneme
    align: str = "uniform"  # uniform | durations (teacher durations; needs text=phoneme)
    length_model: str | None = None  # a duration model part: the length source, copied into the release
    model: dict = field(default_factory=dict)  # TRMConfig fields over the preset's (ignored on resume)
    epochs: int | None = None  # stop after N epochs
    max_steps: int | None = None  # None: epochs (default 100) x batches an epoch
    batch_size: int = 8
    max_tokens: int = DEFAULT_MAX_BATCH_FRAMES  # most padded frames per batch
    max_dev: int = 64
    num_samples: int = 3  # held-out utterances sampled when there are no prompts
    sample_prompts: list[str] = field(default_factory=list)
    sample_prompts_file: str | None = None
    sample_speaker: str = "0"
    sample_temperature: float = DEFAULT_SAMPLING.temperature
    sample_top_k: int | None = DEFAULT_SAMPLING.top_k
    sample_top_p: float | None = DEFAULT_SAMPLING.top_p
    latent_weight: float = 0.0  # weight of the expected-latent error (mel RVQ codecs), 0 = the seed's CE only
    speaker_vectors: bool = False  # condition on each utterance's speaker vector (cloning) instead of speaker ids
    init_from: str | None = None  # a TRM part (e.g. a voice's trm/) to fine-tune from
    seed: int = 42


def _model_config(rc: TRMRunConfig, out: Path, train_cache, resume: bool):
    """(TRMConfig, tokenizer, speakers): from the run's trm_run.json on resume, else from the preset + flags
    (and written there, so a resumed run keeps them)."""
    from codectts.models.trm import TRMConfig
    from codectts.models.trm import preset as trm_preset
    from codectts.text.tokenizers import tokenizer_from_dict

    meta_file = out / RUN_META
    if resume and meta_file.exists():
        run_meta = json.loads(meta_file.read_text(encoding="utf-8"))
        log.info("resuming with the model config of %s (model options on the command line are ignored)", meta_file)
        return TRMConfig.from_dict(run_meta["model"]), tokenizer_from_dict(run_meta["tokenizer"]), run_meta["speakers"]
    tok = build_tokenizer(rc.text)
    speakers = sorted({e.speaker for e in train_cache.entries})
    if rc.speaker_vectors:
        from codectts.data.speaker_vectors import vector_size

        n_vec = vector_size(train_cache.root)
    cfg = trm_preset(rc.preset, **{k: v for k, v in rc.model.items() if v is not None}, alignment=rc.align,
                     vocab_size=tok.vocab_size, n_speakers=len(speakers), n_codebooks=train_cache.n_codebooks,
                     codebook_size=train_cache.codebook_size, speaker_vector_dim=n_vec if rc.speaker_vectors else 0)
    from codectts.fileio import atomic_write_bytes

    meta = {"model": asdict(cfg), "tokenizer": tok.to_dict(), "speakers": speakers}
    atomic_write_bytes(meta_file, json.dumps(meta, indent=1).encode("utf-8"))
    return cfg, tok, speakers


def _prompts(rc: TRMRunConfig, speakers: list[str], dev: TRMData) -> list[Prompt]:
    if rc.sample_prompts_file is not None:
        return [Prompt(t, resolve_speaker(s, speakers, rc.sample_prompts_file))
                for s, t in read_prompts(rc.sample_prompts_file)]
    if rc.sample_prompts:
        spk = resolve_speaker(rc.sample_speaker, speakers, "--sample-speaker")
        return [Prompt(t, spk) for t in rc.sample_prompts]
    return [Prompt(dev.text(j), dev.speaker[j], dev.n_frames(j), dev.index[j],
                   dev.durations[j] if dev.durations is not None else None)
            for j in range(min(rc.num_samples, len(dev)))]


def train_trm(rc: TRMRunConfig, tcfg: TrainConfig, resume: bool = False) -> dict[str, float]:
    """Train the TTS TRM on a code cache; returns the last evaluation."""
    from codectts.models.length import CharRateLength
    from codectts.models.trm import TTSTRM

    codes, out = Path(rc.codes), Path(tcfg.out_dir)
    check_run_folder(out, resume)  # before trm_run.json is written
    train_cache, dev_cache, held = open_splits(codes, rc.max_dev, rc.seed)
    cfg, tok, speakers = _model_config(rc, out, train_cache, resume)
    if (cfg.n_codebooks, cfg.codebook_size) != (train_cache.n_codebooks, train_cache.codebook_size):
        raise ConfigError(f"{codes}: codes are {train_cache.n_codebooks} x {train_cache.codebook_size}, "
                          f"the run's model expects {cfg.n_codebooks} x {cfg.codebook_size}")
    if cfg.alignment == "durations" and tok.kind != "phoneme":
        raise ConfigError("--align durations needs --text phoneme (the teacher's durations are per phoneme)")
    use_dur, use_vec = cfg.alignment == "durations", cfg.speaker_vector_dim > 0
    train = TRMData(train_cache, tok, speakers, cfg.max_frames, cfg.max_text_len, durations=use_dur, vectors=use_vec)
    if held is None:
        dev = TRMData(dev_cache, tok, speakers, cfg.max_frames, cfg.max_text_len, durations=use_dur, vectors=use_vec)
    else:  # no dev split in the cache: hold out items of the training split
        held_set = set(held)
        dev = _subset(train, [j for j, i in enumerate(train.index) if i in held_set])
        train = _subset(train, [j for j, i in enumerate(train.index) if i not in held_set])
    if not len(train) or not len(dev):
        raise DataError(f"{codes}: {len(train)} usable training and {len(dev)} held-out utterances")
    if rc.length_model is not None:
        from codectts.models.length import DurationLength

        length = DurationLength(Path(rc.length_model).resolve(), frame_rate=train_cache.frame_rate,
                                max_frames=cfg.max_frames)
    else:
        length = CharRateLength.fit(((train.text(j), train.n_frames(j)) for j in range(len(train))),
                                    frame_rate=train_cache.frame_rate, max_frames=cfg.max_frames)
    extra = {"tokenizer": tok.to_dict(), "speakers": speakers, "length": length.to_dict(),
             "codec": train_cache.meta.get("codec"), "frame_rate": train_cache.frame_rate, "codes": str(codes)}
    if use_vec:  # a training speaker by name = its mean vector; a clip of anyone = that clip's vector
        extra["speaker_vectors"] = train.speaker_means(speakers)
    sampling = {"temperature": rc.sample_temperature, "top_k": rc.sample_top_k, "top_p": rc.sample_top_p,
                "seed": rc.seed}

    torch.manual_seed(rc.seed)
    model = TTSTRM(cfg)
    if rc.init_from:  # a --resume that finds a checkpoint overwrites these weights with the run's own
        model.init_from(rc.init_from, adaptable=INIT_ADAPTABLE)
    n_batches = len(_sampler(train.lengths(), rc.batch_size, rc.max_tokens, rc.seed, shuffle=True).batches(0))
    n_batches //= world_size()
    max_steps = rc.max_steps or (rc.epochs or 100) * n_batches  # the seed's default: 100 epochs
    tcfg = replace(tcfg, max_steps=max_steps, max_epochs=rc.epochs,
                   warmup_steps=min(tcfg.warmup_steps, max(1, max_steps // 10)))
    task = TRMTask(model, train, dev, extra, rc.batch_size, rc.max_tokens, rc.seed, _prompts(rc, speakers, dev),
                   sampling, rvq=codec_quantizer(extra["codec"]), latent_weight=rc.latent_weight)
    log.info("TTS TRM: %s parameters; %d train / %d dev utterances, %d batches an epoch; codes %d x %d (%s) at "
             "%g Hz; %d speaker(s); text %s (%d symbols); length from %s", f"{model.num_params():,}", len(train),
             len(dev), n_batches, cfg.n_codebooks, cfg.codebook_size, (extra["codec"] or {}).get("type"),
             train_cache.frame_rate, len(speakers), tok.kind, tok.vocab_size, length.kind)
    trainer = Trainer(task, tcfg, run_config={"trm_run": asdict(rc), "trm": asdict(cfg), **extra})
    if resume:
        trainer.resume()
    return trainer.fit()


def register(app: typer.Typer) -> None:
    opt = typer.Option

    @recipe_command(app, "trm", out=Path("runs/trm"), max_steps=None, lr=1e-4, warmup_steps=200, weight_decay=0.1,
                    grad_clip=1.0, batch_size=8, log_every=10, eval_every=500, save_every=1000, sample_every=0,
                    precision="no", seed=42)
    def train_trm_cmd(
        opts: RunOptions,
        codes: Path = codes_option(),
        preset: str = opt("small", help="Model preset: tiny, small, seed."),
        text: str = opt("char", help="Text units: char or phoneme."),
        length_model: Path | None = opt(None, help="Duration model part: the TRM's length at inference comes from "
                                                   "its predicted phoneme durations (default: a character rate "
                                                   "fitted on the corpus). It is copied into the released part."),
        align: str = opt("uniform", help="Place frames on the text by a uniform rate, or by the cache's teacher "
                                         "durations (needs --text phoneme)."),
        # model options (None = the preset's value)
        text_embed_dim: int | None = opt(None, "--text-embed-dim"),
        audio_embed_dim: int | None = opt(None, "--audio-embed-dim"),
        hidden_dim: int | None = opt(None, "--hidden-dim", help="FFN hidden size."),
        text_layers: int | None = opt(None, "--text-layers"),
        l_layers: int | None = opt(None, "--L-layers", help="Recursive blocks per low-level cycle."),
        h_cycles: int | None = opt(None, "--H-cycles", help="High-level refinement cycles."),
        l_cycles: int | None = opt(None, "--L-cycles", help="Low-level reasoning cycles."),
        num_heads: int | None = opt(None, "--num-heads"),
        share_output_heads: bool | None = opt(None, "--share-output-heads/--separate-output-heads"),
        grad_cycles: int | None = opt(None, help="Back-propagate through the last N H-cycles only (0 = all)."),
        max_text_length: int | None = opt(None, "--max-text-length"),
        max_audio_frames: int | None = opt(None, help="Longest utterance (frames); longer ones are skipped."),
        dropout: float | None = opt(None, "--dropout"),
        epochs: int | None = opt(None, help="Stop after N epochs (and, without --max-steps, size the schedule)."),
        max_tokens: int = opt(DEFAULT_MAX_BATCH_FRAMES, help="Most padded frames per batch."),
        max_dev: int = opt(64, help="Held-out utterances used for evaluation."),
        num_samples: int = opt(3, help="Held-out utterances sampled when there are no prompts."),
        sample_prompts: list[str] | None = opt(None, help="A prompt text (repeat the option for more)."),
        sample_prompts_file: Path | None = opt(None, help="Lines of `speaker|text` or `text`; # comments."),
        sample_speaker: str = opt("0", help="Speaker (name or index) for --sample-prompts."),
        sample_temperature: float = opt(DEFAULT_SAMPLING.temperature),
        sample_top_k: int | None = opt(DEFAULT_SAMPLING.top_k),
        sample_top_p: float | None = opt(DEFAULT_SAMPLING.top_p),
        latent_weight: float = opt(0.0, help="Add this weight x the error of the expected codec latent (what a "
                                             "--decode soft voice plays; mel RVQ codecs), normalised to 1 for the "
                                             "mean latent. 0: the seed's cross-entropy only."),
        speaker_vectors: bool = opt(False, "--speaker-vectors", help="Condition on each utterance's speaker vector "
                                    "(`codectts codes speaker-vectors`) instead of a speaker-id table, so the voice "
                                    "clones a reference clip (`say --reference`)."),
        init_from: Path | None = opt(None, help="Start from a trained TRM part, e.g. src/codectts/voices/joe-trm/"
                                                "trm (more data, your own, or another codec's codes: then its "
                                                "output heads start afresh; preset and flags must give its "
                                                "architecture)."),
    ):
        """Train the non-autoregressive TTS TRM on a code cache (checkpoints, --resume, samples)."""
        model = {"text_dim": text_embed_dim, "dim": audio_embed_dim, "ffn_dim": hidden_dim, "text_layers": text_layers,
                 "L_layers": l_layers, "H_cycles": h_cycles, "L_cycles": l_cycles, "n_heads": num_heads,
                 "share_output_heads": share_output_heads, "grad_cycles": grad_cycles,
                 "max_text_len": max_text_length, "max_frames": max_audio_frames, "dropout": dropout}
        rc = TRMRunConfig(codes=str(codes), preset=preset, text=text, align=align,
                          length_model=str(length_model) if length_model else None,
                          model={k: v for k, v in model.items() if v is not None}, epochs=epochs,
                          max_steps=opts.max_steps, batch_size=opts.batch_size, max_tokens=max_tokens,
                          max_dev=max_dev, num_samples=num_samples, sample_prompts=list(sample_prompts or []),
                          sample_prompts_file=str(sample_prompts_file) if sample_prompts_file else None,
                          sample_speaker=sample_speaker, sample_temperature=sample_temperature,
                          sample_top_k=sample_top_k, sample_top_p=sample_top_p, latent_weight=latent_weight,
                          speaker_vectors=speaker_vectors, init_from=str(init_from) if init_from else None,
                          seed=opts.seed)
        metrics = train_trm(rc, opts.train_config(), resume=opts.resume)
        typer.echo(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))


def _subset(data: TRMData, keep: list[int]) -> TRMData:
    """The same TRMData restricted to positions `keep` (shares the cache)."""
    sub = object.__new__(TRMData)
    sub.cache, sub.skipped = data.cache, data.skipped
    sub.index = [data.index[j] for j in keep]
    sub.ids = [data.ids[j] for j in keep]
    sub.speaker = [data.speaker[j] for j in keep]
    sub.durations = [data.durations[j] for j in keep] if data.durations is not None else None
    sub.vectors = [data.vectors[j] for j in keep] if data.vectors is not None else None
    return sub

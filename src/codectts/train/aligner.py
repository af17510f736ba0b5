"""Recipe: `codectts align --data DIR`: learn phoneme durations from the data set itself.

Trains the text-mel aligner (models/aligner.py) on the corpus's own audio and phonemes, then writes
per-phoneme durations into manifest.jsonl and dev.jsonl in the teacher's form: `phonemes` framed by
"^" ... "$", `durations` in frames of `hop` = 256 samples at `sample_rate` = 22,050 Hz, summing to
the audio's frame count. Consumers re-time them to their codec's frame rate (codes extract) exactly
as they do the teacher's, so nothing downstream knows which made them.

Transcripts that do not match their audio get a low alignment score; those utterances move to
excluded.jsonl (with the score) and are listed in align_report.json, never dropped silently.
A rerun reads excluded.jsonl back, so aligning again is idempotent.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codectts.audio.mel import MelConfig, mel_preset
from codectts.data.manifest import Utterance, read_jsonl, write_jsonl
from codectts.data.sampler import DynamicBatchSampler
from codectts.errors import DataError
from codectts.fileio import atomic_write_bytes
from codectts.models.aligner import Aligner, AlignerConfig, even_durations
from codectts.train.loop import Task, TrainConfig, Trainer

log = logging.getLogger(__name__)
EXCLUDED = "excluded.jsonl"
SPLITS = {"train": "manifest.jsonl", "dev": "dev.jsonl"}


@dataclass
class AlignItem:
    utt: Utterance
    split: str
    ids: list[int]
    mel: torch.Tensor  # [n_mels, T]


def utterance_phonemes(u: Utterance, tokenizer) -> list[str]:
    """The utterance's phonemes framed by ^ ... $ (the import writes them; otherwise phonemise its text)."""
    if u.phonemes:
        return list(u.phonemes)
    return ["^", *tokenizer.units(u.normalized or u.text), "$"]


def load_items(data: Path, mel_cfg: MelConfig, progress: bool = True) -> tuple[list[AlignItem], list[dict]]:
    """Every utterance of the corpus (train, dev, and previously excluded) with ids and log-mels.

    Returns (items, rejects): rejects are utterances that cannot be aligned at all (unreadable audio,
    no phonemes, symbols outside the inventory, fewer frames than phonemes), each with its reason.
    """
    from codectts.audio.io import load_audio
    from codectts.audio.mel import MelSpectrogram
    from codectts.errors import AudioError, TextError
    from codectts.text.tokenizers import PhonemeTokenizer

    tok = PhonemeTokenizer()
    records: list[tuple[Utterance, str]] = []
    for split, name in SPLITS.items():
        if (data / name).exists():
            records += [(u, split) for u in read_jsonl(data / name)]
    if (data / EXCLUDED).exists():
        for line in (data / EXCLUDED).read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                records.append((Utterance.from_dict(d), d.get("split", "train")))
    if not records:
        raise DataError(f"{data}: no manifest.jsonl (import a folder first: codectts corpus import)")
    melspec = MelSpectrogram(mel_cfg)
    items, rejects = [], []
    from tqdm import tqdm

    for u, split in tqdm(records, desc="mels", unit="utt", disable=not progress):
        try:
            phonemes = utterance_phonemes(u, tok)
            unknown = sorted({p for p in phonemes if p not in tok.index})
            if unknown or len(phonemes) < 3:
                raise DataError(f"phonemes outside the inventory: {''.join(unknown)}" if unknown else "no phonemes")
            wav, _ = load_audio(u.audio_path(data), sr=mel_cfg.sample_rate)
            mel = melspec(torch.from_numpy(wav)[None])[0]
            if mel.shape[1] < len(phonemes):
                raise DataError(f"{mel.shape[1]} frames for {len(phonemes)} phonemes")
        except (AudioError, DataError, TextError) as e:
            rejects.append({"id": u.id, "split": split, "reason": str(e), "record": json.loads(u.to_json())})
            continue
        u.phonemes = phonemes
        items.append(AlignItem(u, split, [tok.index[p] for p in phonemes], mel))
    return items, rejects


def batch_of(items: list[AlignItem], cfg: AlignerConfig):
    tl = [len(it.ids) for it in items]
    ml = [it.mel.shape[1] for it in items]
    text = torch.zeros(len(items), max(tl), dtype=torch.long)
    mel = torch.zeros(len(items), cfg.n_mels, max(ml))
    for b, it in enumerate(items):
        text[b, :tl[b]] = torch.tensor(it.ids)
        mel[b, :, :ml[b]] = it.mel
    return text, torch.tensor(tl), mel, torch.tensor(ml)


class AlignTask(Task):
    """Viterbi training: each batch is aligned by MAS under the current model (an even split for the
    first `flat_steps` steps), then the loss fits the phonemes' Gaussians to the frames they got."""

    def __init__(self, model: Aligner, train: list[AlignItem], dev: list[AlignItem], max_frames: int, seed: int,
                 flat_steps: int = 50):
        self.model, self.train, self.dev = model, train, dev
        self.max_frames, self.seed, self.flat_steps = max_frames, seed, flat_steps
        self.steps = 0

    def _batches(self, items: list[AlignItem], seed: int, epoch: int, shuffle: bool) -> list[list[int]]:
        """Length-sorted batches of at most `max_frames` padded frames (one bucket: the whole set); an
        utterance longer than that is left out of training only: the alignment pass still aligns it."""
        lengths = [it.mel.shape[1] for it in items]
        return DynamicBatchSampler(lengths, max_samples=len(items), max_tokens=self.max_frames, seed=seed,
                                   shuffle=shuffle, bucket_size=len(items)).batches(epoch)

    def train_batches(self, epoch: int):
        for b in self._batches(self.train, self.seed, epoch, shuffle=True):
            yield batch_of([self.train[i] for i in b], self.model.cfg)

    def loss(self, batch):
        text, tl, mel, ml = batch
        if self.model.training and self.steps < self.flat_steps:
            durations = [even_durations(int(p), int(t)) for p, t in zip(tl, ml, strict=True)]
        else:
            durations = self.model.best_durations(text, tl, mel, ml)
        self.steps += int(self.model.training)
        return self.model.nll(text, tl, mel, ml, [torch.from_numpy(d) for d in durations]), {}

    def state_dict_extra(self) -> dict:
        return {"steps": self.steps}

    def load_state_extra(self, state: dict) -> None:
        self.steps = state.get("steps", 0)

    def evaluate(self) -> dict[str, float]:
        total, n = 0.0, 0
        for b in self._batches(self.dev, 0, 0, shuffle=False):
            loss, _ = self.loss(batch_of([self.dev[i] for i in b], self.model.cfg))
            total, n = total + float(loss) * len(b), n + len(b)
        return {"score": total / max(1, n), "nll": total / max(1, n)}

    def export(self, path: Path) -> None:
        self.model.save(path)


def load_aligner(path: str | Path) -> Aligner:
    return Aligner.load(path)


def train_aligner(items: list[AlignItem], out: Path, max_minutes: float | None, max_steps: int, lr: float = 2e-3,
                  max_frames: int = 6000, seed: int = 0, progress: bool = True,
                  cfg: AlignerConfig | None = None) -> Aligner:
    from codectts.text.tokenizers import PhonemeTokenizer

    mel_cfg = mel_preset("vocoder")
    cfg = cfg or AlignerConfig(vocab_size=PhonemeTokenizer().vocab_size, n_mels=mel_cfg.n_mels,
                               sample_rate=mel_cfg.sample_rate, hop=mel_cfg.hop_length)
    model = Aligner(cfg)
    model.set_mel_stats([it.mel for it in items[:2000]])
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    n_dev = min(100, max(1, len(items) // 50))
    dev, train = [items[i] for i in order[:n_dev]], [items[i] for i in order[n_dev:]] or [items[order[0]]]
    tcfg = TrainConfig(out_dir=str(out), max_steps=max_steps, max_minutes=max_minutes, lr=lr, warmup_steps=50,
                       eval_every=max(100, max_steps // 5), save_every=max(100, max_steps // 5), seed=seed,
                       tensorboard=False, progress=progress)
    trainer = Trainer(AlignTask(model, train, dev, max_frames, seed), tcfg)
    trainer.fit()
    return load_aligner(out / "best") if (out / "best").exists() else trainer.accelerator.unwrap_model(model)


def flag_threshold(scores: np.ndarray, k: float = 10.0, min_gap: float = 0.25) -> float:
    """Scores below median - max(k * median absolute deviation, min_gap) are outliers: a transcript
    not spoken in the audio. On joe (benchmarks/aligner_accuracy.py, docs/aligner.md) clean utterances
    reached 6.5 MADs below the median (one 1.1 s sentence 15), the mildest swapped transcript 11.1."""
    med = float(np.median(scores))
    mad = float(np.median(np.abs(scores - med)))
    return med - max(k * mad, min_gap)


def align_corpus(data: str | Path, aligner: str | Path | None = None, max_minutes: float | None = 20.0,
                 max_steps: int = 4000, min_score: float | None = None, threads: int | None = 1,
                 progress: bool = True) -> dict:
    """Train (or load) the aligner, write durations into the manifests, exclude and list mismatches.

    One torch thread by default: on a shared 2-core machine two threads per process ran ~5x slower.
    """
    data = Path(data)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    mel_cfg = mel_preset("vocoder")
    items, rejects = load_items(data, mel_cfg, progress)
    if not items:
        raise DataError(f"{data}: no utterance can be aligned ({len(rejects)} rejected)")
    t_mels = time.time() - t0
    if aligner:
        model = load_aligner(aligner)
    else:  # a fresh run folder each time (the loop refuses one holding checkpoints); the part and its log stay
        run = Path(tempfile.mkdtemp(dir=data, prefix=".aligner-run-"))
        try:
            model = train_aligner(items, run, max_minutes, max_steps, progress=progress)
            logs = {"log.jsonl": (run / "log.jsonl").read_bytes()} if (run / "log.jsonl").exists() else {}
            model.save(data / "aligner", files=logs)
        finally:
            shutil.rmtree(run, ignore_errors=True)
    t_train = time.time() - t0 - t_mels
    model.eval()
    scores = np.zeros(len(items))
    from tqdm import tqdm

    for i, it in enumerate(tqdm(items, desc="align", unit="utt", disable=not progress)):
        dur, scores[i] = model.align(it.ids, it.mel)
        it.utt.durations = dur.tolist()
        it.utt.hop, it.utt.sample_rate = model.cfg.hop, model.cfg.sample_rate
    threshold = flag_threshold(scores) if min_score is None else min_score
    kept: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    excluded = list(rejects)
    for it, s in zip(items, scores, strict=True):
        it.utt.phonemes = list(it.utt.phonemes)
        if s < threshold:
            excluded.append({"id": it.utt.id, "split": it.split, "reason": f"alignment score {s:.3f} < {threshold:.3f}"
                             " (transcript may not match the audio)", "score": round(float(s), 4),
                             "record": json.loads(it.utt.to_json())})
        else:
            kept[it.split].append(it.utt)
    for split, name in SPLITS.items():
        if kept[split] or (data / name).exists():
            write_jsonl(data / name, kept[split])
    lines = [json.dumps({**e["record"], "split": e["split"], "excluded_because": e["reason"]}, ensure_ascii=False)
             for e in excluded]
    atomic_write_bytes(data / EXCLUDED, "".join(x + "\n" for x in lines).encode("utf-8"))
    report = {"utterances": len(items) + len(rejects), "aligned": {s: len(v) for s, v in kept.items()},
              "excluded": len(excluded), "score_threshold": round(threshold, 4),
              "score_percentiles": {p: round(float(np.percentile(scores, p)), 4) for p in (1, 5, 50, 95)},
              "aligner": str(aligner or data / "aligner"),
              "mel_s": round(t_mels, 1), "train_s": round(t_train, 1), "total_s": round(time.time() - t0, 1),
              "excluded_list": [{k: e[k] for k in ("id", "split", "reason")} for e in excluded]}
    atomic_write_bytes(data / "align_scores.tsv", ("id\tsplit\tscore\n" + "".join(
        f"{it.utt.id}\t{it.split}\t{sc:.4f}\n" for it, sc in zip(items, scores, strict=True))).encode("utf-8"))
    atomic_write_bytes(data / "align_report.json", json.dumps(report, indent=1, ensure_ascii=False).encode())
    return report

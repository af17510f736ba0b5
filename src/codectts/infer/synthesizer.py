"""Synthesizer: text -> waveform with a voice (tokenizer, duration model, Talker, codec, vocoder).

Text is normalised and split into sentences; each sentence is synthesized on its own (bounded
memory for any length) and joined with a short pause. `stream()` yields audio while a sentence is
still being generated: codes -> mel (codec decoder, with its receptive field of look-ahead) ->
waveform (chunked vocoder) as frames arrive.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from codectts.errors import ConfigError, TextError
from codectts.infer.voice import read_voice_json, resolve_voice
from codectts.models.sampling import SamplingConfig
from codectts.text.normalize import has_speakable, normalize_text
from codectts.text.split import split_sentences

log = logging.getLogger(__name__)

MAX_SENTENCE_CHARS = 250
STREAM_CHUNK_FRAMES = 8  # codec frames per generated chunk (8 x 46 ms at 21.5 Hz)
PREFIX_FRAMES_PER_PHONEME = 8  # generation bound for models that must emit EOS themselves


class CodecMelStream:
    """Incremental codes -> log-mel through a non-causal codec decoder: a frame is final once
    `context` frames after it exist; decoding windows carry `context` frames on both sides."""

    def __init__(self, codec):
        self.codec = codec
        self.ctx = getattr(codec, "context_frames", 0)
        self.codes: torch.Tensor | None = None
        self.done = 0

    def push(self, codes: torch.Tensor, final: bool = False) -> torch.Tensor | None:
        self.codes = codes if self.codes is None else torch.cat([self.codes, codes], dim=-1)
        total = self.codes.shape[-1]
        end = total if final else total - self.ctx
        if end <= self.done:
            return None
        a = max(0, self.done - self.ctx)
        mel = self.codec.decode_mel(self.codes[..., a:total])
        s = self.codec.cfg.stack
        out = mel[..., (self.done - a) * s:(end - a) * s]
        self.done = end
        return out


@dataclass
class SentencePlan:
    text: str
    ids: torch.Tensor  # [1, P]
    durations: torch.Tensor | None  # [1, P] aligned models


class Synthesizer:
    def __init__(self, name: str, root: Path, meta: dict, tokenizer, model, duration, codec, vocoder,
                 device: str = "cpu"):
        self.name, self.root, self.meta = name, root, meta
        self.tokenizer, self.model, self.duration = tokenizer, model, duration
        self.codec, self.vocoder, self.device = codec, vocoder, device
        self.sample_rate = int(vocoder.sample_rate)
        s = meta.get("sampling", {})
        self.default_sampling = SamplingConfig(temperature=s.get("temperature", 0.6), top_k=s.get("top_k", 20),
                                               top_p=s.get("top_p"))
        self.pause_s = float(meta.get("sentence_pause_s", 0.2))
        self.max_sentence_chars = MAX_SENTENCE_CHARS  # longer sentences are split at clauses
        self._check_parts()

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, voice: str | os.PathLike | None = None, device: str = "cpu") -> "Synthesizer":
        from codectts.codecs.registry import load_codec
        from codectts.models.talker_io import load_duration, load_talker
        from codectts.text.tokenizers import load_tokenizer
        from codectts.vocoders import load_vocoder

        root = resolve_voice(voice)
        meta = read_voice_json(root)

        def part(key: str) -> Path:
            p = root / meta[key]["path"]
            if not p.exists():
                raise ConfigError(f"voice {meta['name']!r}: missing part {key!r} at {p}")
            return p

        if meta["model"].get("type") != "talker":
            raise ConfigError(f"voice {meta['name']!r}: model type {meta['model'].get('type')!r} is not supported here")
        tok_file = root / meta["tokenizer"]
        if not tok_file.exists():
            raise ConfigError(f"voice {meta['name']!r}: missing tokenizer file {tok_file}")
        vocoder = load_vocoder(meta["vocoder"], root=root, device=device)
        codec = load_codec({**meta["codec"], "path": str(part("codec"))}, vocoder=vocoder, device=device)
        model = load_talker(part("model"), device=device)
        duration = load_duration(part("duration"), device=device) if "duration" in meta else None
        return cls(meta["name"], root, meta, load_tokenizer(tok_file), model, duration, codec, vocoder, device)

    def _check_parts(self) -> None:
        m, c = self.model.cfg, self.codec
        name = self.name
        if (m.n_codebooks, m.codebook_size) != (c.n_codebooks, c.codebook_size):
            raise ConfigError(f"voice {name!r}: talker predicts {m.n_codebooks} x {m.codebook_size} codes but the "
                              f"codec has {c.n_codebooks} x {c.codebook_size}")
        if m.conditioning == "none":
            raise ConfigError(f"voice {name!r}: an unconditional talker cannot read text")
        if m.text_vocab != self.tokenizer.vocab_size:
            raise ConfigError(f"voice {name!r}: talker expects {m.text_vocab} text symbols, tokenizer has "
                              f"{self.tokenizer.vocab_size}")
        if m.conditioning == "aligned":
            if self.duration is None:
                raise ConfigError(f"voice {name!r}: an aligned talker needs a duration part")
            if self.duration.cfg.text_vocab != self.tokenizer.vocab_size:
                raise ConfigError(f"voice {name!r}: duration model and tokenizer disagree on the vocabulary")
            if abs(self.duration.cfg.frame_rate - c.frame_rate) > 1e-3:
                raise ConfigError(f"voice {name!r}: duration model counts {self.duration.cfg.frame_rate} Hz frames, "
                                  f"codec runs at {c.frame_rate} Hz")

    # ---- planning -----------------------------------------------------------------------------
    def sentences(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise TextError("text must be a string")
        norm = normalize_text(text)
        if not norm or not has_speakable(norm):
            raise TextError("text is empty or has nothing speakable after normalisation")
        return split_sentences(norm, max_chars=self.max_sentence_chars)

    def plan(self, sentence: str, speed: float) -> SentencePlan | None:
        try:
            ids = self.tokenizer.encode(sentence)
        except TextError:
            log.warning("skipping a piece with nothing speakable: %r", sentence[:40])
            return None
        t = torch.tensor([ids], device=self.device)
        dur = self.duration.predict(t, speed=speed) if self.model.cfg.conditioning == "aligned" else None
        return SentencePlan(sentence, t, dur)

    def _sampling(self, temperature, top_k, top_p) -> SamplingConfig:
        d = self.default_sampling
        return SamplingConfig(temperature=d.temperature if temperature is None else temperature,
                              top_k=d.top_k if top_k is None else top_k, top_p=d.top_p if top_p is None else top_p)

    def _code_chunks(self, plan: SentencePlan, sampling: SamplingConfig, gen: torch.Generator, chunk: int):
        if self.model.cfg.conditioning == "aligned":
            yield from self.model.generate_aligned(plan.ids, plan.durations, sampling, chunk_frames=chunk, generator=gen)
            return
        bound = PREFIX_FRAMES_PER_PHONEME * plan.ids.shape[1] + 10
        n = 0
        for c in self.model.generate_prefix(plan.ids, bound, sampling, chunk_frames=chunk, generator=gen):
            n += c.shape[-1]
            yield c
        if n >= bound:
            log.warning("no end-of-speech after %d frames: stopped at the bound for %d phonemes", bound,
                        plan.ids.shape[1])

    # ---- synthesis ----------------------------------------------------------------------------
    @torch.no_grad()
    def sentence_codes(self, sentence: str, speed: float = 1.0, temperature=None, top_k=None, top_p=None,
                       seed: int | None = None) -> torch.Tensor:
        plan = self.plan(sentence, speed)
        if plan is None:
            return torch.zeros(1, self.codec.n_codebooks, 0, dtype=torch.long)
        gen = torch.Generator(device=self.device).manual_seed(0 if seed is None else seed)
        return torch.cat(list(self._code_chunks(plan, self._sampling(temperature, top_k, top_p), gen, 0)), dim=-1)

    @torch.no_grad()
    def synthesize(self, text: str, *, speed: float = 1.0, temperature: float | None = None, top_k: int | None = None,
                   top_p: float | None = None, seed: int | None = None) -> tuple[np.ndarray, int]:
        """Whole utterance at once (each sentence vocoded in one piece). Returns (wav float32 [T], sample_rate)."""
        pieces = []
        for i, sent in enumerate(self.sentences(text)):
            codes = self.sentence_codes(sent, speed, temperature, top_k, top_p, None if seed is None else seed + i)
            if codes.shape[-1] == 0:
                continue
            wav = self.vocoder(self.codec.decode_mel(codes))[0].float().cpu().numpy()
            if pieces:
                pieces.append(np.zeros(int(self.pause_s * self.sample_rate), dtype=np.float32))
            pieces.append(wav)
        if not pieces:
            raise TextError("nothing speakable in the text")
        return _finish(np.concatenate(pieces)), self.sample_rate

    @torch.no_grad()
    def stream(self, text: str, *, speed: float = 1.0, temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None,
               chunk_frames: int = STREAM_CHUNK_FRAMES) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks as they are generated (first chunk after ~chunk_frames frames)."""
        from codectts.vocoders import StreamConfig, VocoderStream

        sentences = self.sentences(text)
        sampling = self._sampling(temperature, top_k, top_p)
        stack = getattr(getattr(self.codec, "cfg", None), "stack", 1)
        vcfg = StreamConfig(chunk_frames=max(4, chunk_frames * stack // 2))
        emitted = False
        for i, sent in enumerate(sentences):
            plan = self.plan(sent, speed)
            if plan is None:
                continue
            if emitted:
                yield np.zeros(int(self.pause_s * self.sample_rate), dtype=np.float32)
            gen = torch.Generator(device=self.device).manual_seed(0 if seed is None else seed + i)
            mels, voc = CodecMelStream(self.codec), VocoderStream(self.vocoder, vcfg)
            for codes in self._code_chunks(plan, sampling, gen, chunk_frames):
                mel = mels.push(codes)
                if mel is not None and mel.shape[-1]:
                    wav = voc.push(mel)
                    if wav.shape[-1]:
                        emitted = True
                        yield _finish(wav[0].cpu().numpy())
            mel = mels.push(torch.zeros(1, self.codec.n_codebooks, 0, dtype=torch.long, device=self.device), final=True)
            tail = [voc.push(mel)] if mel is not None and mel.shape[-1] else []
            tail.append(voc.flush())
            wav = torch.cat(tail, dim=-1)
            if wav.shape[-1]:
                emitted = True
                yield _finish(wav[0].cpu().numpy())
        if not emitted:
            raise TextError("nothing speakable in the text")


def _finish(wav: np.ndarray) -> np.ndarray:
    """float32, finite, within [-1, 1] (same per-sample rule for whole and streamed audio)."""
    return np.clip(np.nan_to_num(wav.astype(np.float32, copy=False)), -1.0, 1.0)


def timed_first_chunk(synth: Synthesizer, text: str, **kw) -> tuple[float, float, float]:
    """(seconds to first chunk, total seconds, audio seconds) for one streamed synthesis."""
    t0 = time.perf_counter()
    first, n = None, 0
    for chunk in synth.stream(text, **kw):
        if first is None:
            first = time.perf_counter() - t0
        n += len(chunk)
    return first or 0.0, time.perf_counter() - t0, n / synth.sample_rate

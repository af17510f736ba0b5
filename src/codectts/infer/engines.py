"""The acoustic model behind a voice: one sentence in, codec codes out, in chunks.

The Synthesizer splits text, decodes codes to audio and streams; an engine only plans a sentence
and yields its codes [1, K, n]. One engine per model family:

- `TalkerEngine` (seeds 000/001, the default voice): autoregressive; aligned (duration model gives the
  length) or prefix (the model emits end-of-speech);
- `TRMEngine` (seed 003): non-autoregressive; the whole sentence at once, length from the part's
  length source (a character rate or a duration model); with `decode="soft"` it yields each frame's
  distributions [1, K, F, N] (float) instead of codes, which the Synthesizer decodes to the expected
  codec latent (`MelRVQCodec.decode_mel_soft`);
- `CSMEngine` (seed 004): backbone + depth decoder, stops on its EOS code; can speak in the voice of a
  reference clip (cloning).

Engines that take a seed rather than a torch.Generator draw it from the Synthesizer's per-sentence
generator, so the same seed gives the same audio for every engine.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from codectts.errors import ConfigError, TextError
from codectts.infer.talker import TalkerGenerator
from codectts.models.sampling import SamplingConfig

log = logging.getLogger(__name__)

PREFIX_FRAMES_PER_PHONEME = 8  # generation bound for models that must emit EOS themselves
CSM_BOUND_SECONDS_PER_CHAR = 0.25  # about twice a normal speaking rate: the bound only stops runaways


def _encode_or_skip(tokenizer, sentence: str) -> list[int] | None:
    """Token ids of a sentence, or None (with a warning) for a piece with nothing speakable."""
    try:
        return tokenizer.encode(sentence)
    except TextError:
        log.warning("skipping a piece with nothing speakable: %r", sentence[:40])
        return None


@dataclass
class SentencePlan:
    text: str
    ids: torch.Tensor | None = None  # [1, P] (Talker)
    durations: torch.Tensor | None = None  # [1, P] frames per token (aligned Talker and CSM, durations TRM)
    speed: float = 1.0


class TooLong(TextError):
    """A piece of text longer than the model takes in one pass (phonemes or frames past its max_seq_len).

    Raised by `plan` before any model runs past its limit; the Synthesizer splits the piece and plans
    the halves (non-Latin text can give 1,000+ phonemes in one 250-character sentence)."""


def seed_from(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=gen))


def chunked(codes: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
    """[1, K, F] codes (or [1, K, F, N] soft codes) -> pieces of `chunk` frames (all at once when chunk is 0)."""
    step = chunk or max(1, codes.shape[2])
    for a in range(0, codes.shape[2], step):
        yield codes[:, :, a:a + step]


def clone_refusal(what: str) -> ConfigError:
    """The one answer to a reference clip given to a voice that cannot clone (Synthesizer and engines)."""
    return ConfigError(f"{what} cannot clone a reference voice (only interleaved csm voices, and trm and "
                       "aligned csm voices trained on speaker vectors, can)")


def _no_reference(kind: str, reference) -> None:
    if reference is not None:
        raise clone_refusal(f"{kind} voices")


class TalkerEngine:
    kind = "talker"
    clones = False  # speaks in a reference clip's voice

    def __init__(self, model, duration, tokenizer, device: str = "cpu", context: dict | None = None):
        self.model, self.duration, self.tokenizer, self.device = model, duration, tokenizer, device
        self.generator = TalkerGenerator(model)
        self.batcher = None  # an infer.batch.BatchedTalker: aligned sentences share decode steps (servers)
        context = context or {}  # voice.json "context": attention spans for text longer than in training
        self.window, self.text_window = context.get("frames"), context.get("phonemes")
        m = model.cfg
        if m.conditioning == "aligned":  # phonemes through the duration model and the text encoder
            self.max_units = min(m.max_seq_len, duration.cfg.max_seq_len if duration is not None else m.max_seq_len)
        else:  # text prefix + the frame bound must fit the decoder's positions
            self.max_units = (m.max_seq_len - 11) // (PREFIX_FRAMES_PER_PHONEME + 1)

    def check(self, codec, name: str) -> None:
        m = self.model.cfg
        if (m.n_codebooks, m.codebook_size) != (codec.n_codebooks, codec.codebook_size):
            raise ConfigError(f"voice {name!r}: talker predicts {m.n_codebooks} x {m.codebook_size} codes but the "
                              f"codec has {codec.n_codebooks} x {codec.codebook_size}")
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
            if abs(self.duration.cfg.frame_rate - codec.frame_rate) > 1e-3:
                raise ConfigError(f"voice {name!r}: duration model counts {self.duration.cfg.frame_rate} Hz "
                                  f"frames, codec runs at {codec.frame_rate} Hz")

    def plan(self, sentence: str, speed: float) -> SentencePlan | None:
        ids = _encode_or_skip(self.tokenizer, sentence)
        if ids is None:
            return None
        if len(ids) > self.max_units:
            raise TooLong(f"{len(ids)} phonemes; this talker takes at most {self.max_units} at once")
        t = torch.tensor([ids], device=self.device)
        dur = self.duration.predict(t, speed=speed) if self.model.cfg.conditioning == "aligned" else None
        if dur is not None and int(dur.sum()) > self.model.cfg.max_seq_len:
            raise TooLong(f"{int(dur.sum())} frames; this talker makes at most {self.model.cfg.max_seq_len} at once")
        return SentencePlan(sentence, t, dur, speed)

    def code_chunks(self, plan: SentencePlan, sampling: SamplingConfig, gen: torch.Generator, chunk: int,
                    reference=None) -> Iterator[torch.Tensor]:
        _no_reference(self.kind, reference)
        if self.model.cfg.conditioning == "aligned":
            source = self.batcher or self.generator
            yield from source.aligned(plan.ids, plan.durations, sampling, chunk_frames=chunk, generator=gen,
                                      window=self.window, text_window=self.text_window)
            return
        bound = PREFIX_FRAMES_PER_PHONEME * plan.ids.shape[1] + 10
        n = 0
        for c in self.generator.prefix(plan.ids, bound, sampling, chunk_frames=chunk, generator=gen):
            n += c.shape[-1]
            yield c
        if n >= bound:
            log.warning(
                "no end-of-speech after %d frames: stopped at the bound for %d phonemes", bound, plan.ids.shape[1]
            )


class _TextEngine:
    """Engines whose model tokenizes the text itself: a plan is the sentence and the speed."""

    kind = "?"
    tokenizer = None
    clones = False

    def plan(self, sentence: str, speed: float) -> SentencePlan | None:
        ids = _encode_or_skip(self.tokenizer, sentence)
        if ids is None:
            return None
        self.check_length(sentence, len(ids), speed)
        return SentencePlan(sentence, speed=speed)

    def check_length(self, sentence: str, n_ids: int, speed: float) -> None:
        """Raise TooLong when the model cannot take the sentence in one pass."""

    def check_codes(self, n_codebooks: int, codebook_size: int, codec, name: str) -> None:
        if (n_codebooks, codebook_size) != (codec.n_codebooks, codec.codebook_size):
            raise ConfigError(
                f"voice {name!r}: {self.kind} predicts {n_codebooks} x {codebook_size} codes but the "
                f"codec has {codec.n_codebooks} x {codec.codebook_size}"
            )


class TRMEngine(_TextEngine):
    kind = "trm"

    def __init__(self, generator, device: str = "cpu", decode: str = "codes"):
        from codectts.infer.trm import DECODES

        if decode not in DECODES:
            raise ConfigError(f"decode must be one of {DECODES}, got {decode!r}")
        self.generator, self.tokenizer, self.device, self.decode = generator, generator.tokenizer, device, decode

    @property
    def clones(self) -> bool:
        return self.generator.clones

    def check(self, codec, name: str) -> None:
        cfg = self.generator.model.cfg
        self.check_codes(cfg.n_codebooks, cfg.codebook_size, codec, name)
        if self.decode == "soft" and not hasattr(codec, "decode_mel_soft"):
            raise ConfigError(f"voice {name!r}: soft decoding needs a codec that decodes distributions "
                              f"(mel_rvq), not {type(codec).__name__}")
        rate = self.generator.frame_rate
        if rate is not None and abs(rate - codec.frame_rate) > 1e-3:
            raise ConfigError(
                f"voice {name!r}: the TRM was trained on {rate} Hz codes, the codec runs at {codec.frame_rate} Hz"
            )

    def plan(self, sentence: str, speed: float) -> SentencePlan | None:
        ids = _encode_or_skip(self.tokenizer, sentence)
        if ids is None:
            return None
        cfg = self.generator.model.cfg
        if len(ids) > cfg.max_text_len:
            raise TooLong(f"{len(ids)} text tokens; this TRM takes at most {cfg.max_text_len} at once")
        d = self.generator.plan_durations(sentence, speed)  # planned once: generation reads them from the plan
        n_frames = sum(d) if d is not None else self.generator.length.n_frames(sentence, speed)
        if n_frames > cfg.max_frames:
            raise TooLong(f"{n_frames} frames; this TRM makes at most {cfg.max_frames} at once")
        return SentencePlan(sentence, durations=None if d is None else torch.tensor([d]), speed=speed)

    def code_chunks(
        self, plan: SentencePlan, sampling: SamplingConfig, gen: torch.Generator, chunk: int, reference=None
    ) -> Iterator[torch.Tensor]:
        if not self.clones:
            _no_reference(self.kind, reference)
        durations = None if plan.durations is None else plan.durations[0].tolist()
        codes = self.generator.generate(plan.text, speed=plan.speed, sampling=sampling, seed=seed_from(gen),
                                        durations=durations, decode=self.decode,
                                        reference=reference)  # [K, F] ([K, F, N] soft)
        yield from chunked(codes[None].to(self.device), chunk)  # non-autoregressive: all frames at once


class CSMEngine(_TextEngine):
    kind = "csm"

    def __init__(self, generator, default_reference=None, device: str = "cpu"):
        self.generator, self.tokenizer, self.device = generator, generator.tokenizer, device
        self.default_reference = default_reference

    def check(self, codec, name: str) -> None:
        cfg = self.generator.model.cfg
        self.check_codes(cfg.n_codebooks, cfg.codebook_size, codec, name)

    @property
    def aligned(self) -> bool:
        return self.generator.model.cfg.aligned

    @property
    def clones(self) -> bool:
        return self.generator.clones

    def plan(self, sentence: str, speed: float) -> SentencePlan | None:
        if not self.aligned:
            if abs(speed - 1.0) > 1e-6:
                raise ConfigError("a csm voice speaks at its own (or its reference's) rate: speed must be 1.0")
            return super().plan(sentence, speed)
        ids = _encode_or_skip(self.tokenizer, sentence)
        if ids is None:
            return None
        d = self.generator.plan_durations(sentence, speed)  # planned once: generation reads them from the plan
        room = self.generator.model.cfg.max_seq_len
        if max(sum(d), len(ids)) > room:
            raise TooLong(f"{sum(d)} frames ({len(ids)} phonemes) do not fit max_seq_len {room}")
        return SentencePlan(sentence, durations=torch.tensor([d]), speed=speed)

    def bound(self, text: str) -> int:
        """Frames a sentence may take before generation stops without end-of-speech."""
        return math.ceil(len(text) * CSM_BOUND_SECONDS_PER_CHAR * self.generator.codec.frame_rate) + 25

    def check_length(self, sentence: str, n_ids: int, speed: float) -> None:
        n_prompt = self.generator.prompt(sentence, self.default_reference)[0].shape[1]
        room = self.generator.model.cfg.max_seq_len
        if n_prompt + self.bound(sentence) > room:
            raise TooLong(f"prompt of {n_prompt} positions and its frames do not fit max_seq_len {room}")

    def code_chunks(
        self, plan: SentencePlan, sampling: SamplingConfig, gen: torch.Generator, chunk: int, reference=None
    ) -> Iterator[torch.Tensor]:
        if self.aligned:
            if not self.clones:
                _no_reference("aligned csm", reference)
            res = self.generator.generate(plan.text, reference, sampling=sampling, seed=seed_from(gen), decode=False,
                                          durations=plan.durations[0].tolist())
            yield from chunked(res.codes[None].to(self.device), chunk)
            return
        ref = reference if reference is not None else self.default_reference
        bound = self.bound(plan.text)
        res = self.generator.generate(
            plan.text,
            ref,
            sampling=sampling,
            max_frames=bound,
            seed=seed_from(gen),
            decode=False,
        )
        if not res.stopped:
            log.warning(
                "no end-of-speech after %d frames: stopped at the bound for %d characters", bound, len(plan.text)
            )
        # the Synthesizer decodes Mimi once per sentence, so frame-by-frame chunks would gain nothing
        yield from chunked(res.codes[None].to(self.device), chunk)

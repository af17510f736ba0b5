"""Synthesizer: text -> waveform with a voice (an acoustic-model engine, a codec, a vocoder).

Text is normalised and split into sentences; each sentence is synthesized on its own (bounded
memory for any length) and joined with a short pause. The engine (`infer/engines.py`: Talker, TRM
or CSM) turns a sentence into codec codes. `stream()` yields audio while a sentence is still being
generated: codes -> mel (codec decoder, with its receptive field of look-ahead) -> waveform
(chunked vocoder) as frames arrive; a waveform codec (Mimi) is decoded once per sentence.

Inputs are checked where they enter (`synthesize`, `stream`, `sentence_codes`): options by
`infer.options.check_options`, text against `Limits` (characters before and after normalisation,
planned audio). A sentence the model cannot take in one pass (non-Latin text can phonemise to more
than its max_seq_len) is halved until every piece fits. Every failure is a CodecTTSError.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codectts.codecs.base import MelCodec
from codectts.errors import CodecTTSError, ConfigError, GenerationError, TextError
from codectts.infer.engines import SentencePlan, TooLong, clone_refusal
from codectts.infer.options import Options, check_options
from codectts.infer.precision import check_weights, with_weights
from codectts.infer.voice import (
    RUNTIMES,
    VoiceSpec,
    inside,
    load_codec_and_vocoder,
    read_voice,
    resolve_voice,
    voice_part,
)
from codectts.models.sampling import SamplingConfig
from codectts.text.normalize import has_speakable, normalize_text
from codectts.text.split import split_sentences

log = logging.getLogger(__name__)

MAX_SENTENCE_CHARS = 250
# Voices learn from 5-20-word sentences (data/textsource.py): a shorter sentence is spoken together with
# its neighbour (docs/talker.md, "Sentence starts": a lone "Hello!" was heard as "oh wow" or "alone").
MIN_SENTENCE_WORDS = 5
STREAM_CHUNK_FRAMES = 8  # codec frames per generated chunk (8 x 46 ms at 21.5 Hz)
GROW_AFTER_CONTEXTS = 3  # CodecMelStream decodes in growing windows once 3 x context frames are out
# how a Talker's frames run: eager torch, or ONNX Runtime (infer/onnx_talker.py; speed in docs/speed.md).
# "auto": the voice's own choice (voice.json "backend", default "onnx") where ONNX Runtime applies (an
# aligned Talker with depth heads, float32, on cpu), else torch.
BACKENDS = ("auto", *RUNTIMES)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Text grows when normalised ('#' * 4096 reads "number" 4,096 times:
    28,672 characters, 1,355 s of audio), so both the raw and the normalised length are bounded, and
    the planned audio where the engine plans its frames (aligned talkers), speed included."""

    max_chars: int = 20_000  # ~17 minutes of ordinary English at the default voice's ~19.5 characters/s
    max_audio_s: float = 1_200.0

    def __post_init__(self):
        if isinstance(self.max_chars, bool) or not isinstance(self.max_chars, int) or self.max_chars < 1:
            raise ConfigError(f"max_chars must be a positive integer, got {self.max_chars!r}")
        if not isinstance(self.max_audio_s, int | float) or not math.isfinite(self.max_audio_s) \
                or self.max_audio_s <= 0:
            raise ConfigError(f"max_audio_s must be a positive number of seconds, got {self.max_audio_s!r}")


def codes_to_mel(codec: MelCodec, codes: torch.Tensor) -> torch.Tensor:
    """[1, K, F] codes, or [1, K, F, N] soft codes (a TRM's distributions), -> log-mel [1, M, F * stack]."""
    return codec.decode_mel_soft(codes) if codes.is_floating_point() else codec.decode_mel(codes)


class CodecMelStream:
    """Incremental codes -> log-mel through a non-causal codec decoder: a frame is final once
    `context` frames after it exist; decoding windows carry `context` frames on both sides.
    Codes are [1, K, F] or soft [1, K, F, N]: frames are on axis 2 either way.

    Frames go out as soon as they are final until GROW_AFTER_CONTEXTS x context frames are out (so the
    vocoder's look-ahead for the first audio is not held up); after that each decode waits for twice
    as many new frames as the last, up to 4 x context, so the context decoded again per window shrinks
    from 2.5x the new frames (8 new, 10 + 10 context on joe) to 0.5x. Exact for any chunking."""

    def __init__(self, codec: MelCodec):
        self.codec = codec
        self.ctx = codec.context_frames
        self.codes: torch.Tensor | None = None
        self.done = 0
        self.min_new = 1  # frames the next decode waits for (doubles after each, up to 4 x context)

    def push(self, codes: torch.Tensor | None, final: bool = False) -> torch.Tensor | None:
        if codes is not None:
            self.codes = codes if self.codes is None else torch.cat([self.codes, codes], dim=2)
        total = self.codes.shape[2]
        end = total if final else total - self.ctx
        if end <= self.done or (not final and end - self.done < self.min_new):
            return None
        if end >= GROW_AFTER_CONTEXTS * self.ctx:  # the first audio (the vocoder's look-ahead) is not held up
            self.min_new = min(2 * (end - self.done), 4 * self.ctx)
        a = max(0, self.done - self.ctx)
        mel = codes_to_mel(self.codec, self.codes[:, :, a:total])
        s = self.codec.mel_frames_per_code
        out = mel[..., (self.done - a) * s:(end - a) * s]
        self.done = end
        return out


def on_backend(talker, backend: str, device: str, preferred: str = "onnx"):
    """The Talker as it runs on `backend`: 'auto' resolves to `preferred` (the voice's "backend") where
    the frame graph applies (`onnx_talker.unsupported`) on cpu, else to torch, and falls back to torch
    (with a warning) where ONNX Runtime cannot run it (not installed, an unwritable cache, ...)."""
    from codectts.infer.onnx_talker import OnnxTalker, unsupported

    if backend == "auto":
        if str(device) != "cpu" or unsupported(talker):
            return talker
        try:
            return on_backend(talker, preferred, device)
        except CodecTTSError as e:
            log.warning("backend %s unavailable (%s): running the Talker on torch", preferred, e)
            return talker
    if backend == "torch":
        return talker
    return OnnxTalker(talker, int8=backend == "onnx-int8")


class Synthesizer:
    def __init__(self, name: str, root: Path, meta: dict, engine, codec, vocoder, device: str = "cpu",
                 limits: Limits | None = None):
        self.name, self.root, self.meta = name, root, meta
        self.engine, self.codec, self.vocoder, self.device = engine, codec, vocoder, device
        self.sample_rate = int(vocoder.sample_rate if vocoder is not None else codec.sample_rate)
        self.default_sampling = SamplingConfig.from_dict(meta.get("sampling", {}), f"voice {name!r}: sampling")
        self.pause_s = float(meta.get("sentence_pause_s", 0.2))
        self.max_sentence_chars = MAX_SENTENCE_CHARS  # longer sentences are split at clauses
        self.limits = limits or Limits()
        if isinstance(codec, MelCodec) != (vocoder is not None):
            raise ConfigError(f"voice {name!r}: a mel codec needs a vocoder, a waveform codec none")
        if vocoder is not None:
            codec.mel.check_compatible(vocoder.mel, f"voice {name!r}: codec vs vocoder")
        engine.check(codec, name)

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, voice: str | os.PathLike | None = None, device: str = "cpu",
             limits: Limits | None = None, weights: str | None = None, backend: str = "auto",
             batch: int = 0, vocoder: str | None = None) -> Synthesizer:
        """Load a voice by name or folder. Anything wrong in it is a ConfigError/CheckpointError naming it.

        `weights` ('float32' or 'bfloat16'; default: voice.json "weights", float32 when absent) is the
        precision of a Talker's weights (infer/precision.py; speed and quality in docs/speed.md).
        `backend` 'onnx' runs an aligned Talker's frames on ONNX Runtime (CPU, float32 weights; the
        same codes as 'torch'; exported on first use into the cache folder, infer/onnx_talker.py);
        'onnx-int8' with the transformer's weights quantised to int8 (other codes; dev WER in
        docs/speed.md); 'auto' (default) is the voice's choice (voice.json "backend": 'onnx' unless its
        maker measured int8 to keep its quality, as for joe) where it applies and runs, else 'torch'
        (`synth.backend` says which).
        `batch` > 0: concurrent calls' sentences share decode steps, up to that many per step
        (for servers; `Synthesizer.batch` says where it applies).
        `vocoder` 'griffinlim' replaces a mel voice's trained vocoder with Griffin-Lim for the same mel (the
        fallback, and the baseline a trained vocoder is measured against)."""
        if backend not in BACKENDS:
            raise ConfigError(f"backend: {backend!r} is not one of {list(BACKENDS)}")
        root = resolve_voice(voice)
        meta, spec = read_voice(root)
        if vocoder is not None:
            meta = with_vocoder(meta, vocoder, spec.name)
        if weights is not None:
            check_weights(weights, f"voice {spec.name!r}: weights")
            if weights != "float32" and spec.model.type != "talker":
                raise ConfigError(f"voice {spec.name!r}: weights={weights!r} is for talker voices only")
        if backend not in ("auto", "torch") and (spec.model.type != "talker" or str(device) != "cpu"):
            raise ConfigError(f"voice {spec.name!r}: backend {backend!r} is for talker voices on cpu only")
        try:
            synth = cls._load(root, meta, spec, device, limits, weights or spec.weights, backend)
        except CodecTTSError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, IndexError, RuntimeError) as e:
            # a part or spec field that passed the checks but does not work together with the rest
            raise ConfigError(f"voice {spec.name!r} ({root}): cannot load ({type(e).__name__}: {e})") from e
        if batch:
            synth.batch(batch)
        return synth

    @classmethod
    def _load(cls, root: Path, meta: dict, spec: VoiceSpec, device: str, limits: Limits | None,
              weights: str = "float32", backend: str = "torch") -> Synthesizer:
        name = spec.name

        def part(key: str) -> Path:
            return voice_part(root, meta, key)

        codec, vocoder = load_codec_and_vocoder(root, meta, device)
        kind = spec.model.type
        model_path = part("model")
        if kind == "talker":
            from codectts.infer.engines import TalkerEngine
            from codectts.models.duration import DurationModel
            from codectts.models.talker import Talker
            from codectts.text.tokenizers import load_tokenizer

            tok_file = inside(root, spec.tokenizer, "tokenizer")
            if not tok_file.exists():
                raise ConfigError(f"voice {name!r}: missing tokenizer file {tok_file}")
            duration = DurationModel.load(part("duration"), device) if spec.duration else None
            context = {k: v for k, v in vars(spec.context).items() if v is not None} if spec.context else None
            talker = on_backend(with_weights(Talker.load(model_path, device), weights), backend, device, spec.backend)
            engine = TalkerEngine(talker, duration, load_tokenizer(tok_file), device, context)
        elif kind == "trm":
            from codectts.infer.engines import TRMEngine
            from codectts.infer.trm import TRMGenerator

            engine = TRMEngine(TRMGenerator.load(model_path, device=device), device, spec.model.decode)
        else:
            from codectts.infer.csm import CSMGenerator
            from codectts.infer.engines import CSMEngine

            gen = CSMGenerator.load(model_path, codec=codec, device=device)
            engine = CSMEngine(gen, device=device)
            if spec.reference and not engine.clones:
                raise ConfigError(f"voice {name!r}: an aligned csm speaks in its training voice; drop 'reference'")
            if spec.reference:  # the voice's own speaker: a reference clip stored in the voice folder
                engine.default_reference = cls._reference(gen, inside(root, spec.reference.audio, "reference audio"),
                                                          spec.reference.text)
        return cls(name, root, meta, engine, codec, vocoder, device, limits)

    @property
    def backend(self) -> str:
        """How the Talker's frames run ('torch', 'onnx', 'onnx-int8'): Synthesizer.load's `backend`, 'auto'
        resolved; 'torch' for every other engine."""
        from codectts.infer.onnx_talker import OnnxTalker

        model = getattr(self.engine, "model", None)
        if isinstance(model, OnnxTalker):
            return "onnx-int8" if model.int8 else "onnx"
        return "torch"

    def batch(self, max_batch: int) -> bool:
        """Let concurrent calls' sentences share decode steps, up to `max_batch` per step (infer/batch.py,
        infer/onnx_talker.py). True when it applies: an aligned Talker on torch; on the ONNX backends only
        when `max_batch` exceeds the cores (fewer requests than cores run faster each on its own core:
        ONNX Runtime releases the GIL; docs/speed.md). Other voices decode alone."""
        from codectts.models.talker import Talker

        model = getattr(self.engine, "model", None)
        if self.backend == "torch" and isinstance(model, Talker) and model.cfg.conditioning == "aligned":
            from codectts.infer.batch import BatchedTalker as make
        elif self.backend != "torch" and max_batch > (os.cpu_count() or 1):
            from codectts.infer.onnx_talker import BatchedOnnxTalker as make
        else:
            if hasattr(self.engine, "batcher"):
                self.engine.batcher = None
            return False
        self.engine.batcher = make(model, max_batch) if max_batch > 0 else None
        return max_batch > 0

    @staticmethod
    def _reference(generator, audio: str | os.PathLike, transcript: str):
        from codectts.audio.io import load_audio

        if not isinstance(transcript, str) or not transcript.strip():
            raise TextError("a reference clip needs its transcript (what is said in it)")
        wav, sr = load_audio(audio)
        return generator.reference_from_audio(wav, sr, transcript)

    def reference(self, audio: str | os.PathLike, transcript: str):
        """A voice to clone: a short clip and what it says (interleaved csm voices, and trm and aligned csm
        voices trained on speaker vectors)."""
        self._check_clones()
        return self._reference(self.engine.generator, audio, transcript)

    # ---- checking and planning ----------------------------------------------------------------
    def _check_clones(self) -> None:
        if not getattr(self.engine, "clones", False):
            raise clone_refusal(f"voice {self.name!r} ({self.engine.kind})")

    def options(self, speed=1.0, temperature=None, top_k=None, top_p=None, seed=None, reference=None) -> Options:
        """The request's options, checked (ConfigError names the bad one); None = the voice's default."""
        opts = check_options(self.default_sampling, speed=speed, temperature=temperature, top_k=top_k, top_p=top_p,
                             seed=seed)
        if reference is not None:
            from codectts.infer.csm import Reference

            self._check_clones()
            pair = isinstance(reference, tuple) and len(reference) == 2 and torch.is_tensor(reference[0]) \
                and isinstance(reference[1], str)
            kind = self.engine.generator.reference_kind
            if not isinstance(reference, kind) and (kind is not Reference or not pair):
                raise ConfigError("reference must come from Synthesizer.reference(clip, transcript)")
        return opts

    def sentences(self, text: str) -> list[str]:
        """Normalised text split into sentences; TextError when empty, unspeakable or over the limits."""
        if not isinstance(text, str):
            raise TextError(f"text must be a string, got {type(text).__name__}")
        limit = self.limits.max_chars
        if len(text) > limit:
            raise TextError(f"text is {len(text)} characters; the limit is {limit} per request (Limits.max_chars)")
        norm = normalize_text(text)
        if not norm or not has_speakable(norm):
            raise TextError("text is empty or has nothing speakable after normalisation")
        if len(norm) > limit:
            raise TextError(f"text reads as {len(norm)} characters once numbers and symbols are spelled out; "
                            f"the limit is {limit} per request (Limits.max_chars)")
        return split_sentences(norm, max_chars=self.max_sentence_chars, min_words=MIN_SENTENCE_WORDS)

    def plan(self, sentence: str, speed: float = 1.0) -> list[SentencePlan]:
        """Plans for one sentence: the whole of it, or pieces halved until each fits the model in one pass."""
        out, todo = [], [sentence]
        while todo:
            piece = todo.pop()
            try:
                plan = self.engine.plan(piece, speed)
            except TooLong as e:
                halves = _halve(piece)
                if halves is None:
                    raise TextError(f"text too long for voice {self.name!r} even one character at a time ({e})") \
                        from None
                todo.extend(reversed(halves))
                continue
            if plan is not None:
                out.append(plan)
        return out

    def _plans(self, sentences: list[str], speed: float) -> Iterator[SentencePlan]:
        """Every piece's plan, in order, refusing the request once its planned audio passes the limit."""
        frames = 0
        for sent in sentences:
            for plan in self.plan(sent, speed):
                if plan.durations is not None:
                    frames += int(plan.durations.sum())
                    if frames / self.codec.frame_rate > self.limits.max_audio_s:
                        raise TextError(f"text plans more than {self.limits.max_audio_s:g} s of audio (at speed "
                                        f"{speed:g}); the limit is per request (Limits.max_audio_s)")
                yield plan

    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """codes [1, K, F] (or a TRM's soft codes [1, K, F, N]) -> waveform [T] (mel codec + vocoder, or a
        waveform codec)."""
        if self.vocoder is not None:
            return self.vocoder(codes_to_mel(self.codec, codes))[0].float().cpu().numpy()
        return self.codec.decode(codes)[0].float().cpu().numpy()

    # ---- synthesis ----------------------------------------------------------------------------
    def _codes(self, plan: SentencePlan, opts: Options, i: int, chunk: int, reference) -> Iterator[torch.Tensor]:
        gen = torch.Generator(device=self.device).manual_seed(opts.sentence_seed(i))
        return self.engine.code_chunks(plan, opts.sampling, gen, chunk, reference)

    @torch.no_grad()
    def sentence_codes(self, sentence: str, speed: float = 1.0, temperature=None, top_k=None, top_p=None,
                       seed: int | None = None, reference=None) -> torch.Tensor:
        """Codes [1, K, F] for one piece of text in one pass (not split; TextError if the model cannot take it);
        a soft-decoding TRM voice gives its distributions [1, K, F, N] (float) instead."""
        opts = self.options(speed, temperature, top_k, top_p, seed, reference)
        if not isinstance(sentence, str):
            raise TextError(f"text must be a string, got {type(sentence).__name__}")
        plan = self.engine.plan(sentence, opts.speed)
        chunks = [] if plan is None else list(self._codes(plan, opts, 0, 0, reference))
        if not chunks:
            return torch.zeros(1, self.codec.n_codebooks, 0, dtype=torch.long)
        return torch.cat(chunks, dim=2)

    @torch.no_grad()
    def synthesize(self, text: str, *, speed: float = 1.0, temperature: float | None = None, top_k: int | None = None,
                   top_p: float | None = None, seed: int | None = None, reference=None,
                   should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, int]:
        """Whole utterance at once (each sentence decoded in one piece). Returns (wav float32 [T], sample_rate).

        Every sentence is planned before any audio is made, so a request over the limits fails at once.
        `reference` (from `self.reference(clip, transcript)`, csm voices) speaks in the clip's voice.
        `should_stop` is asked before each sentence and chunk of frames; when it says True, generation ends with
        GenerationError (the server's way to free a worker whose client left or timed out)."""
        opts = self.options(speed, temperature, top_k, top_p, seed, reference)
        plans = list(self._plans(self.sentences(text), opts.speed))
        pieces = []
        for i, plan in enumerate(plans):
            if should_stop is not None and should_stop():
                raise GenerationError(f"generation stopped before sentence {i + 1}")
            chunks = []
            for chunk in self._codes(plan, opts, i, STREAM_CHUNK_FRAMES, reference):
                if should_stop is not None and should_stop():  # a batched sentence leaves the batch at once
                    raise GenerationError(f"generation stopped in sentence {i + 1}")
                chunks.append(chunk)
            codes = torch.cat(chunks, dim=2) if chunks else None
            if codes is None or codes.shape[2] == 0:
                continue
            if pieces:
                pieces.append(np.zeros(int(self.pause_s * self.sample_rate), dtype=np.float32))
            pieces.append(self.decode_codes(codes))
        if not pieces:
            raise TextError("nothing speakable in the text")
        return _finish(np.concatenate(pieces)), self.sample_rate

    @torch.no_grad()
    def stream(self, text: str, *, speed: float = 1.0, temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, reference=None,
               chunk_frames: int = STREAM_CHUNK_FRAMES) -> Iterator[np.ndarray]:
        """Yield float32 audio chunks as they are generated (first chunk after ~chunk_frames frames).

        Options and text length are checked before the first chunk; sentences are planned as they come
        (planning all first would delay the first chunk), so a stream whose planned audio passes
        Limits.max_audio_s ends with a TextError at that sentence."""
        opts = self.options(speed, temperature, top_k, top_p, seed, reference)
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or not 1 <= chunk_frames <= 10_000:
            raise ConfigError(f"chunk_frames must be an integer in [1, 10000], got {chunk_frames!r}")
        return self._stream(self.sentences(text), opts, reference, chunk_frames)

    def _stream(self, sentences: list[str], opts: Options, reference, chunk_frames: int) -> Iterator[np.ndarray]:
        with torch.no_grad():
            emitted = False
            for i, plan in enumerate(self._plans(sentences, opts.speed)):
                if emitted:
                    yield np.zeros(int(self.pause_s * self.sample_rate), dtype=np.float32)
                chunks = self._codes(plan, opts, i, chunk_frames, reference)
                pieces = self._stream_wav(chunks) if self.vocoder is None else self._stream_mel(chunks, chunk_frames)
                for wav in pieces:
                    emitted = True
                    yield _finish(wav)
            if not emitted:
                raise TextError("nothing speakable in the text")

    def _stream_mel(self, chunks: Iterator[torch.Tensor], chunk_frames: int) -> Iterator[np.ndarray]:
        """Codes -> mel as frames become final -> chunked vocoder."""
        from codectts.vocoders import VocoderStream, stream_config_for

        mels = CodecMelStream(self.codec)
        chunk_mels = max(4, chunk_frames * self.codec.mel_frames_per_code // 2)
        voc = VocoderStream(self.vocoder, stream_config_for(self.vocoder, chunk_mels))
        for codes in chunks:
            mel = mels.push(codes)
            if mel is not None and mel.shape[-1]:
                wav = voc.push(mel)
                if wav.shape[-1]:
                    yield wav[0].cpu().numpy()
        if mels.codes is None:
            return
        mel = mels.push(None, final=True)
        tail = [voc.push(mel)] if mel is not None and mel.shape[-1] else []
        tail.append(voc.flush())
        wav = torch.cat(tail, dim=-1)
        if wav.shape[-1]:
            yield wav[0].cpu().numpy()

    def _stream_wav(self, chunks: Iterator[torch.Tensor]) -> Iterator[np.ndarray]:
        """A waveform codec (Mimi) is decoded once the sentence's codes are complete."""
        codes = list(chunks)
        if codes:
            yield self.decode_codes(torch.cat(codes, dim=2))


def _finish(wav: np.ndarray) -> np.ndarray:
    """float32, finite, within [-1, 1] (same per-sample rule for whole and streamed audio)."""
    return np.clip(np.nan_to_num(wav.astype(np.float32, copy=False)), -1.0, 1.0)


def _halve(piece: str) -> tuple[str, str] | None:
    """Split text near its middle, at a space when there is one; None when it cannot be split."""
    piece = piece.strip()
    if len(piece) < 2:
        return None
    mid = len(piece) // 2
    left, right = piece.rfind(" ", 0, mid + 1), piece.find(" ", mid)
    spaces = [i for i in (left, right) if 0 < i < len(piece) - 1]
    cut = min(spaces, key=lambda i: abs(i - mid)) if spaces else mid
    return piece[:cut].strip(), piece[cut:].strip()


def with_vocoder(meta: dict, vocoder: str, name: str) -> dict:
    """voice.json with its vocoder replaced by Griffin-Lim for the same mel (only 'griffinlim' is offered:
    a trained vocoder is made for one codec's mels, so it comes with the voice that was built for it)."""
    if vocoder != "griffinlim":
        raise ConfigError(f"vocoder: {vocoder!r} is not 'griffinlim' (a trained vocoder is part of its voice)")
    spec = meta.get("vocoder")
    if not isinstance(spec, dict) or "mel" not in spec:
        raise ConfigError(f"voice {name!r}: has no mel vocoder to replace (a waveform codec decodes its own audio)")
    return {**meta, "vocoder": {"type": "griffinlim", "mel": spec["mel"]}}

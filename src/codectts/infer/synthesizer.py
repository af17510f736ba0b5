"""Synthesizer: text -> waveform with a voice (an acoustic-model engine, a codec, a vocoder).

Text is normalised and split into sentences; each sentence is synthesized on its own (bounded
memory for any length) and joined with a short pause. The engine (`infer/engines.py`: Talker, TRM
or CSM) turns a sentence into codec codes. `stream()` yields audio while a sentence is still being
generated: codes -> mel (codec decoder, with its receptive field of look-ahead) -> waveform
(chunked vocoder) as frames arrive; a waveform codec (Mimi) is decoded once per sentence.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from codectts.codecs.base import MelCodec
from codectts.errors import ConfigError, GenerationError, TextError
from codectts.infer.voice import load_codec_and_vocoder, read_voice_json, resolve_voice, voice_part
from codectts.models.sampling import SamplingConfig
from codectts.text.normalize import has_speakable, normalize_text
from codectts.text.split import split_sentences

log = logging.getLogger(__name__)

MAX_SENTENCE_CHARS = 250
STREAM_CHUNK_FRAMES = 8  # codec frames per generated chunk (8 x 46 ms at 21.5 Hz)


class CodecMelStream:
    """Incremental codes -> log-mel through a non-causal codec decoder: a frame is final once
    `context` frames after it exist; decoding windows carry `context` frames on both sides."""

    def __init__(self, codec: MelCodec):
        self.codec = codec
        self.ctx = codec.context_frames
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
        s = self.codec.mel_frames_per_code
        out = mel[..., (self.done - a) * s:(end - a) * s]
        self.done = end
        return out


class Synthesizer:
    def __init__(self, name: str, root: Path, meta: dict, engine, codec, vocoder, device: str = "cpu"):
        self.name, self.root, self.meta = name, root, meta
        self.engine, self.codec, self.vocoder, self.device = engine, codec, vocoder, device
        self.sample_rate = int(vocoder.sample_rate if vocoder is not None else codec.sample_rate)
        self.default_sampling = SamplingConfig.from_dict(meta.get("sampling", {}), f"voice {name!r}: sampling")
        self.pause_s = float(meta.get("sentence_pause_s", 0.2))
        self.max_sentence_chars = MAX_SENTENCE_CHARS  # longer sentences are split at clauses
        if isinstance(codec, MelCodec) != (vocoder is not None):
            raise ConfigError(f"voice {name!r}: a mel codec needs a vocoder, a waveform codec none")
        if vocoder is not None:
            codec.mel.check_compatible(vocoder.mel, f"voice {name!r}: codec vs vocoder")
        engine.check(codec, name)

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, voice: str | os.PathLike | None = None, device: str = "cpu") -> Synthesizer:
        root = resolve_voice(voice)
        meta = read_voice_json(root)
        name = meta["name"]

        def part(key: str) -> Path:
            return voice_part(root, meta, key)

        codec, vocoder = load_codec_and_vocoder(root, meta, device)
        kind = meta["model"].get("type")
        if kind == "talker":
            from codectts.infer.engines import TalkerEngine
            from codectts.models.duration import DurationModel
            from codectts.models.talker import Talker
            from codectts.text.tokenizers import load_tokenizer

            tok_file = root / meta.get("tokenizer", "tokenizer.json")
            if not tok_file.exists():
                raise ConfigError(f"voice {name!r}: missing tokenizer file {tok_file}")
            duration = DurationModel.load(part("duration"), device) if "duration" in meta else None
            engine = TalkerEngine(Talker.load(part("model"), device), duration, load_tokenizer(tok_file),
                                  device, meta.get("context"))
        elif kind == "trm":
            from codectts.infer.engines import TRMEngine
            from codectts.infer.trm import TRMGenerator

            engine = TRMEngine(TRMGenerator.load(part("model"), device=device), device)
        elif kind == "csm":
            from codectts.infer.csm import CSMGenerator
            from codectts.infer.engines import CSMEngine

            gen = CSMGenerator.load(part("model"), codec=codec, device=device)
            engine = CSMEngine(gen, device=device)
            ref = meta.get("reference")
            if ref:  # the voice's own speaker: a reference clip stored in the voice folder
                engine.default_reference = cls._reference(gen, root / ref["audio"], ref.get("text", ""))
        else:
            raise ConfigError(f"voice {name!r}: unknown model type {kind!r} (talker, trm or csm)")
        return cls(name, root, meta, engine, codec, vocoder, device)

    @staticmethod
    def _reference(generator, audio: str | os.PathLike, transcript: str):
        from codectts.audio.io import load_audio

        if not transcript or not transcript.strip():
            raise TextError("a reference clip needs its transcript (what is said in it)")
        wav, sr = load_audio(audio)
        return generator.reference_from_audio(wav, sr, transcript)

    def reference(self, audio: str | os.PathLike, transcript: str):
        """A voice to clone: a short clip and what it says (csm voices only)."""
        if self.engine.kind != "csm":
            raise ConfigError(f"voice {self.name!r} ({self.engine.kind}) cannot clone a reference voice; "
                              "use a csm voice")
        return self._reference(self.engine.generator, audio, transcript)

    # ---- planning -----------------------------------------------------------------------------
    def sentences(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise TextError("text must be a string")
        norm = normalize_text(text)
        if not norm or not has_speakable(norm):
            raise TextError("text is empty or has nothing speakable after normalisation")
        return split_sentences(norm, max_chars=self.max_sentence_chars)

    def _sampling(self, temperature, top_k, top_p) -> SamplingConfig:
        return self.default_sampling.override(temperature, top_k, top_p)

    def decode_codes(self, codes: torch.Tensor) -> np.ndarray:
        """codes [1, K, F] -> waveform [T] (mel codec + vocoder, or a waveform codec)."""
        if self.vocoder is not None:
            return self.vocoder(self.codec.decode_mel(codes))[0].float().cpu().numpy()
        return self.codec.decode(codes)[0].float().cpu().numpy()

    # ---- synthesis ----------------------------------------------------------------------------
    @torch.no_grad()
    def sentence_codes(self, sentence: str, speed: float = 1.0, temperature=None, top_k=None, top_p=None,
                       seed: int | None = None, reference=None) -> torch.Tensor:
        plan = self.engine.plan(sentence, speed)
        gen = torch.Generator(device=self.device).manual_seed(0 if seed is None else seed)
        sampling = self._sampling(temperature, top_k, top_p)
        chunks = [] if plan is None else list(self.engine.code_chunks(plan, sampling, gen, 0, reference))
        if not chunks:
            return torch.zeros(1, self.codec.n_codebooks, 0, dtype=torch.long)
        return torch.cat(chunks, dim=-1)

    @torch.no_grad()
    def synthesize(self, text: str, *, speed: float = 1.0, temperature: float | None = None, top_k: int | None = None,
                   top_p: float | None = None, seed: int | None = None, reference=None,
                   should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, int]:
        """Whole utterance at once (each sentence decoded in one piece). Returns (wav float32 [T], sample_rate).

        `reference` (from `self.reference(clip, transcript)`, csm voices) speaks in the clip's voice.
        `should_stop` is asked before each sentence; when it says True, generation ends with
        GenerationError (the server's way to free a worker whose client left or timed out)."""
        pieces = []
        for i, sent in enumerate(self.sentences(text)):
            if should_stop is not None and should_stop():
                raise GenerationError(f"generation stopped before sentence {i + 1}")
            codes = self.sentence_codes(sent, speed, temperature, top_k, top_p, None if seed is None else seed + i,
                                        reference)
            if codes.shape[-1] == 0:
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
        """Yield float32 audio chunks as they are generated (first chunk after ~chunk_frames frames)."""
        sentences = self.sentences(text)
        sampling = self._sampling(temperature, top_k, top_p)
        emitted = False
        for i, sent in enumerate(sentences):
            plan = self.engine.plan(sent, speed)
            if plan is None:
                continue
            if emitted:
                yield np.zeros(int(self.pause_s * self.sample_rate), dtype=np.float32)
            gen = torch.Generator(device=self.device).manual_seed(0 if seed is None else seed + i)
            chunks = self.engine.code_chunks(plan, sampling, gen, chunk_frames, reference)
            pieces = self._stream_mel(chunks, chunk_frames) if self.vocoder is not None else self._stream_wav(chunks)
            for wav in pieces:
                emitted = True
                yield _finish(wav)
        if not emitted:
            raise TextError("nothing speakable in the text")

    def _stream_mel(self, chunks: Iterator[torch.Tensor], chunk_frames: int) -> Iterator[np.ndarray]:
        """Codes -> mel as frames become final -> chunked vocoder."""
        from codectts.vocoders import StreamConfig, VocoderStream

        mels = CodecMelStream(self.codec)
        chunk_mels = max(4, chunk_frames * self.codec.mel_frames_per_code // 2)
        voc = VocoderStream(self.vocoder, StreamConfig(chunk_frames=chunk_mels))
        for codes in chunks:
            mel = mels.push(codes)
            if mel is not None and mel.shape[-1]:
                wav = voc.push(mel)
                if wav.shape[-1]:
                    yield wav[0].cpu().numpy()
        if mels.codes is None:
            return
        mel = mels.push(torch.zeros(1, self.codec.n_codebooks, 0, dtype=torch.long, device=self.device), final=True)
        tail = [voc.push(mel)] if mel is not None and mel.shape[-1] else []
        tail.append(voc.flush())
        wav = torch.cat(tail, dim=-1)
        if wav.shape[-1]:
            yield wav[0].cpu().numpy()

    def _stream_wav(self, chunks: Iterator[torch.Tensor]) -> Iterator[np.ndarray]:
        """A waveform codec (Mimi) is decoded once the sentence's codes are complete."""
        codes = list(chunks)
        if codes:
            yield self.decode_codes(torch.cat(codes, dim=-1))


def _finish(wav: np.ndarray) -> np.ndarray:
    """float32, finite, within [-1, 1] (same per-sample rule for whole and streamed audio)."""
    return np.clip(np.nan_to_num(wav.astype(np.float32, copy=False)), -1.0, 1.0)

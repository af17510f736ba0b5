"""CSM generation: the loop around `CSM.generate_frame`, sampling, stopping, voice cloning, decoding.

Voice cloning puts a reference clip (its codes from any Codec) and its transcript before the target
text, exactly as training sequences put one utterance before another:

    [reference text][reference frames][EOS frame][target text] -> frames until the EOS frame

so the continuation is predicted in the reference's voice. Without a reference the model speaks in
whatever voice the text alone makes most likely (for a one-speaker corpus, that speaker).

An aligned CSM trained with `--speaker-vectors` clones differently: the reference is a clip's speaker
vector (`SpeakerReference`, as the cloning TRM's), added to every frame's conditioning; without one it
speaks as its first training speaker (the mean of that speaker's vectors).
"""
from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from codectts.audio.io import resample
from codectts.errors import CheckpointError, ConfigError, TextError
from codectts.infer.speakers import SpeakerReference, choose_vector, clip_reference
from codectts.models.csm import CSM, Segment, build_sequence
from codectts.models.length import length_source_from_dict, planned_durations
from codectts.models.sampling import SamplingConfig, sample_logits
from codectts.parts import read_part_config
from codectts.text.tokenizers import Tokenizer, tokenizer_from_dict


@dataclass
class Reference:
    """A voice prompt: codes [K, F] of the reference audio and what it says."""

    codes: torch.Tensor
    transcript: str


@dataclass
class CSMResult:
    codes: torch.Tensor  # [K, F], EOS frame not included
    stopped: bool  # True when the model ended the utterance itself (EOS), False when max_frames ran out
    wav: torch.Tensor | None = None  # [T] when a codec was given
    sample_rate: int | None = None


class CSMGenerator:
    """Receives its parts (model, codec, tokenizer); fetches nothing itself."""

    def __init__(self, model: CSM, codec=None, tokenizer: Tokenizer | None = None, length=None,
                 speaker_vectors: dict[str, list[float]] | None = None):
        self.model = model.eval()
        self.speaker_vectors = speaker_vectors  # a --speaker-vectors part: each training speaker's mean vector
        self.codec = codec
        if tokenizer is None:
            raise ConfigError("CSMGenerator needs the tokenizer the model was trained with")
        self.tokenizer = tokenizer
        cfg = model.cfg
        if cfg.aligned and not hasattr(length, "frame_durations"):
            raise ConfigError("an aligned CSM needs a duration model as its length source (train csm --length-model)")
        self.length = length
        if tokenizer.vocab_size > cfg.text_vocab_size:
            raise ConfigError(f"tokenizer has {tokenizer.vocab_size} symbols, model embeds {cfg.text_vocab_size}")
        if codec is not None and (codec.n_codebooks != cfg.n_codebooks or codec.codebook_size != cfg.codebook_size):
            raise ConfigError(f"codec gives {codec.n_codebooks} x {codec.codebook_size} codes, model predicts "
                              f"{cfg.n_codebooks} x {cfg.codebook_size}")

    @classmethod
    def load(cls, path: str | Path, codec=None, device: str | torch.device = "cpu") -> CSMGenerator:
        """From a release part written by `codectts train csm` (the tokenizer is stored in its config.json)."""
        model, meta = CSM.load(path, device), read_part_config(path)
        if "tokenizer" not in meta:
            raise CheckpointError(f"{path}: config.json has no 'tokenizer' (not a CSM trained by codectts train csm)")
        length = length_source_from_dict(meta["length"], root=path) if meta.get("length") else None
        return cls(model, codec, tokenizer_from_dict(meta["tokenizer"]), length, meta.get("speaker_vectors"))

    @property
    def reference_kind(self) -> type:
        """What `reference_from_audio` makes and generation takes: a clip's speaker vector (aligned parts)
        or its codes (interleaved)."""
        return SpeakerReference if self.model.cfg.aligned else Reference

    @property
    def clones(self) -> bool:
        """Whether a reference clip sets the voice: interleaved (the clip's codes as context) or aligned
        with speaker vectors (the clip's vector)."""
        return not self.model.cfg.aligned or self.model.cfg.speaker_vector_dim > 0

    def speaker_vector(self, reference: SpeakerReference | None) -> torch.Tensor | None:
        """An aligned part's speaker conditioning: the reference's vector, else the first training speaker's in
        name order (the part's `speakers` list and a TRM's speaker 0), whatever order the vectors were stored in."""
        first = min(self.speaker_vectors or {""})
        return choose_vector(self.model.cfg.speaker_vector_dim, first, self.speaker_vectors, reference, "aligned CSM")

    def plan_durations(self, text: str, speed: float = 1.0) -> list[int]:
        """Aligned mode: frames per phoneme token of `text` from the duration model, at the codes' rate."""
        d = planned_durations(self.length, self.tokenizer, text, speed)
        if d is None:
            raise TextError(f"nothing to say in {text[:40]!r}: the duration model gives it no frames")
        return d

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reference_from_audio(self, wav: np.ndarray | torch.Tensor, sr: int, transcript: str
                             ) -> Reference | SpeakerReference:
        """Encode mono reference audio [T] at `sr` with this generator's codec (resampled to its rate); an
        aligned part with speaker vectors takes the clip's speaker vector instead."""
        if self.model.cfg.aligned:
            return clip_reference(wav, sr, transcript, self.model.cfg.speaker_vector_dim, "aligned CSM")
        if self.codec is None:
            raise ConfigError("a reference given as audio needs a codec; pass codes instead")
        wav = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, dtype=np.float32)
        wav = resample(wav, sr, self.codec.sample_rate)
        codes = self.codec.encode(torch.from_numpy(wav)[None])
        return Reference(codes[0], transcript)

    def prompt(self, text: str, reference: Reference | tuple[torch.Tensor, str] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backbone prompt ([1, S], [1, S, K], [1, S]) for `text` after an optional reference."""
        segments = []
        if isinstance(reference, SpeakerReference):
            raise ConfigError("an interleaved CSM clones from a clip's codes, not a speaker vector")
        if reference is not None:
            ref = reference if isinstance(reference, Reference) else Reference(*reference)
            if not ref.transcript.strip():
                raise TextError("the reference needs its transcript")
            codes = torch.as_tensor(ref.codes)
            if codes.dim() == 3:
                codes = codes[0]
            segments.append(Segment(self.tokenizer.encode(ref.transcript), codes))
        segments.append(Segment(self.tokenizer.encode(text)))
        cfg = self.model.cfg
        seq = build_sequence(segments, cfg.n_codebooks, cfg.eos_code)
        return tuple(t[None].to(self.device) for t in seq)  # type: ignore[return-value]

    @torch.inference_mode()
    def frames(self, text: str, reference: Reference | SpeakerReference | tuple[torch.Tensor, str] | None = None, *,
               sampling: SamplingConfig | None = None, max_frames: int | None = None, min_frames: int = 0,
               seed: int | None = None, speed: float = 1.0,
               durations: Sequence[int] | None = None) -> Generator[torch.Tensor, None, bool]:
        """Yield frames [K] one at a time until the model emits EOS or `max_frames` is reached (aligned
        mode: exactly the durations' frames, planned by the duration model at `speed` unless given).

        The generator's return value (StopIteration.value) is True when it stopped on EOS (or, aligned,
        made every planned frame)."""
        cfg = self.model.cfg
        gen = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        if cfg.aligned:
            vector = self.speaker_vector(reference)  # type: ignore[arg-type]
            yield from self._aligned_frames(text, sampling, gen, speed, durations, vector)
            return True
        if abs(speed - 1.0) > 1e-6:
            raise ConfigError("an interleaved CSM speaks at its own (or its reference's) rate: speed must be 1.0")
        text_ids, audio, mask = self.prompt(text, reference)
        n_prompt = text_ids.shape[1]
        room = cfg.max_seq_len - n_prompt
        if room < 1:
            raise TextError(f"prompt of {n_prompt} positions (reference + text) leaves no room in "
                              f"max_seq_len {cfg.max_seq_len}; use a shorter reference or text")
        max_frames = room if max_frames is None else min(max_frames, room)
        n_done = 0

        def sample(logits: torch.Tensor, codebook: int) -> torch.Tensor:
            if codebook == 0 and n_done < min_frames:
                logits = logits.clone()
                logits[:, cfg.eos_code] = float("-inf")
            return sample_logits(logits, sampling, gen)

        dtype = next(self.model.parameters()).dtype
        caches, dec_caches = self.model.make_caches(1, max_len=n_prompt + max_frames, device=self.device, dtype=dtype)
        h = self.model.prefill(text_ids, audio, mask, caches)
        while n_done < max_frames:
            out = self.model.generate_frame(h, dec_caches, sample)
            if bool(out.is_eos(cfg.eos_code)[0]):
                return True
            n_done += 1
            yield out.codes[0]
            if n_done < max_frames:
                h = self.model.step(out.codes, caches)
        return False

    def _aligned_frames(self, text: str, sampling: SamplingConfig | None, gen: torch.Generator | None,
                        speed: float, durations: Sequence[int] | None,
                        speaker_vector: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Aligned mode: one backbone step per planned frame, the previous frame plus this frame's
        phoneme conditioning in; end-of-speech is never drawn (the durations set the length)."""
        cfg = self.model.cfg
        ids = self.tokenizer.encode(text)
        d = list(durations) if durations is not None else self.plan_durations(text, speed)
        if len(d) != len(ids):
            raise ConfigError(f"{len(d)} durations for {len(ids)} phoneme tokens")
        n = int(sum(d))
        if n > cfg.max_seq_len or len(ids) > cfg.max_seq_len:
            raise TextError(f"{n} frames ({len(ids)} phonemes) do not fit max_seq_len {cfg.max_seq_len}: "
                            f"split the text")
        dev = self.device
        vec = None if speaker_vector is None else speaker_vector.to(dev, torch.float32)[None]
        cond = self.model.frame_conditioning(torch.tensor([ids], device=dev), torch.tensor([len(ids)], device=dev),
                                             torch.tensor([d], device=dev), n, vec)  # [1, F, D]

        def sample(logits: torch.Tensor, codebook: int) -> torch.Tensor:
            if codebook == 0:
                logits = logits.clone()
                logits[:, cfg.eos_code] = float("-inf")
            return sample_logits(logits, sampling, gen)

        dtype = next(self.model.parameters()).dtype
        caches, dec_caches = self.model.make_caches(1, max_len=max(1, n), device=dev, dtype=dtype)
        frame = self.model.start_frame(1, dev)
        for t in range(n):
            h = self.model.step(frame, caches, cond[:, t].to(dtype))
            frame = self.model.generate_frame(h, dec_caches, sample).codes
            yield frame[0]

    def generate(self, text: str, reference: Reference | SpeakerReference | tuple[torch.Tensor, str] | None = None,
                 *,
                 sampling: SamplingConfig | None = None, max_frames: int | None = None, min_frames: int = 0,
                 seed: int | None = None, decode: bool = True, speed: float = 1.0,
                 durations: Sequence[int] | None = None) -> CSMResult:
        """Text (and an optional reference voice) -> codes [K, F], and the waveform when a codec is set."""
        it = self.frames(text, reference, sampling=sampling, max_frames=max_frames, min_frames=min_frames, seed=seed,
                         speed=speed, durations=durations)
        frames: list[torch.Tensor] = []
        while True:
            try:
                frames.append(next(it))
            except StopIteration as done:
                stopped = bool(done.value)
                break
        k = self.model.cfg.n_codebooks
        codes = torch.stack(frames, dim=1).cpu() if frames else torch.zeros(k, 0, dtype=torch.long)
        result = CSMResult(codes=codes, stopped=stopped)
        if decode and self.codec is not None and codes.shape[1]:
            result.wav = self.codec.decode(codes[None])[0]
            result.sample_rate = self.codec.sample_rate
        return result

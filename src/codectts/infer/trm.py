"""Generation with the TTS TRM: text + speaker + a length -> codes [K, F] from one refinement call.

Non-autoregressive, so there is no loop: the text is tokenized, the length comes from a length source
(or is given), `TTSTRM.predict` runs every refinement cycle once, and the shared sampler draws every
code at once. `generate(model, text, speaker, n_frames=... | length_source=... | durations=...)` is
the low-level call (model and tokenizer passed in); `decode="soft"` returns each frame's distribution
over every codebook instead of drawn codes, for `MelRVQCodec.decode_mel_soft` (the expected codec
latent; docs/trm.md "Soft decoding"). `TRMGenerator.load(part_dir)` bundles what a trained part needs
at run time (model, tokenizer, speaker names, length source, codec spec), as CSMGenerator and
TalkerGenerator do for theirs; a part trained on durations speaks on its duration model's durations.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from codectts.errors import CheckpointError, ConfigError, GenerationError
from codectts.infer.speakers import SpeakerReference, choose_vector, clip_reference
from codectts.models.length import LengthSource, length_source_from_dict, planned_durations
from codectts.models.sampling import SamplingConfig, sample_logits
from codectts.models.speed import check_speed
from codectts.models.trm import TTSTRM, positions_from_durations
from codectts.parts import read_part_config
from codectts.text.tokenizers import Tokenizer, tokenizer_from_dict

DECODES = ("codes", "soft")  # drawn codes per codebook | per-codebook distributions (a codec's expected latent)


@torch.inference_mode()
def generate(model: TTSTRM, text: str | Sequence[int], speaker: int = 0, n_frames: int | None = None,
             length_source: LengthSource | None = None, *, tokenizer: Tokenizer | None = None, speed: float = 1.0,
             sampling: SamplingConfig | None = None, seed: int | None = None,
             durations: Sequence[int] | None = None, decode: str = "codes",
             speaker_vector: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Codes [K, F] for one utterance, F = n_frames, length_source.n_frames(text, speed) or sum(durations);
    with `decode="soft"`, probabilities [K, F, N] (softmax of the logits; `sampling` and `seed` unused).

    `text` is a string (needs `tokenizer`) or already-encoded ids (with BOS/EOS). Exactly one of
    `n_frames`, `length_source` and `durations` (frames per text token, e.g. from a duration model;
    they also place each frame on its token) must be given. A model trained on speaker vectors needs
    `speaker_vector` [V] (and ignores `speaker`). Raises TextError when the text has nothing to speak.
    """
    speed = check_speed(speed)
    if decode not in DECODES:
        raise ConfigError(f"decode must be one of {DECODES}, got {decode!r}")
    if sum(x is not None for x in (n_frames, length_source, durations)) != 1:
        raise ConfigError("give exactly one of n_frames, length_source and durations")
    positions = None
    if durations is not None:
        positions = positions_from_durations(durations)
        n_frames = positions.numel()
    if isinstance(text, str):
        if tokenizer is None:
            raise ConfigError("text given as a string: pass the model's tokenizer")
        ids = tokenizer.encode(text)
        if n_frames is None:
            n_frames = length_source.n_frames(text, speed)
    else:
        ids = [int(i) for i in text]
        if not ids:
            raise ConfigError("empty text ids")
        if n_frames is None:
            raise ConfigError("text given as ids: pass n_frames (a length source needs the text)")
    if int(n_frames) < 1:
        raise ConfigError(f"n_frames must be >= 1, got {n_frames}")
    if durations is not None and len(durations) != len(ids):
        raise ConfigError(f"{len(durations)} durations for {len(ids)} text tokens")
    dev = model.device
    vec = None if speaker_vector is None else torch.as_tensor(speaker_vector, dtype=torch.float32, device=dev)[None]
    logits = model.predict(torch.tensor([ids], device=dev), torch.tensor([len(ids)], device=dev),
                           torch.tensor([int(speaker)], device=dev), torch.tensor([int(n_frames)], device=dev),
                           frame_positions=None if positions is None else positions[None].to(dev), speaker_vector=vec)
    if not torch.isfinite(logits).all():
        raise GenerationError("the TRM produced non-finite logits (NaN/Inf weights or activations)")
    if decode == "soft":
        return torch.softmax(logits[0].float(), dim=-1)  # [K, F, N]
    gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    return sample_logits(logits[0], sampling, gen)  # [K, F]


@dataclass
class TRMGenerator:
    """A trained TRM with what it needs at run time; built by `load` from a release part."""

    model: TTSTRM
    tokenizer: Tokenizer
    length: LengthSource
    speakers: list[str] = field(default_factory=lambda: ["0"])
    codec: dict | None = None  # the codec spec the codes belong to (from the code cache)
    frame_rate: float | None = None
    speaker_vectors: dict[str, list[float]] | None = None  # a cloning part: each training speaker's mean vector

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> TRMGenerator:
        model, meta = TTSTRM.load(path, device), read_part_config(path)
        for key in ("tokenizer", "length"):
            if key not in meta:
                raise CheckpointError(f"{path}: config.json has no {key!r} (not a TRM trained by codectts train trm)")
        return cls(
            model=model,
            tokenizer=tokenizer_from_dict(meta["tokenizer"]),
            length=length_source_from_dict(meta["length"], root=path),
            speakers=list(meta.get("speakers", ["0"])),
            codec=meta.get("codec"),
            frame_rate=meta.get("frame_rate"),
            speaker_vectors=meta.get("speaker_vectors"),
        )

    reference_kind = SpeakerReference  # what `reference_from_audio` makes and generation takes

    @property
    def clones(self) -> bool:
        """Whether the part reads its speaker from a vector, so a reference clip sets the voice."""
        return self.model.cfg.speaker_vector_dim > 0

    def reference_from_audio(self, wav, sr: int, transcript: str) -> SpeakerReference:
        """The speaker vector of mono audio [T] at `sr` (the encoder the part was trained with)."""
        return clip_reference(wav, sr, transcript, self.model.cfg.speaker_vector_dim, "TRM")

    def speaker_vector(self, speaker: int | str | None, reference: SpeakerReference | None) -> torch.Tensor | None:
        """What a cloning part is conditioned on: the reference's vector, else the named training speaker's mean."""
        return choose_vector(self.model.cfg.speaker_vector_dim, self.speakers[self.speaker_id(speaker)],
                             self.speaker_vectors, reference, "TRM")

    def plan_durations(self, text: str, speed: float = 1.0) -> list[int] | None:
        """Frames per token of `self.tokenizer.encode(text)` from the length source, for a model trained with
        `--align durations` (it never saw uniform positions); None when the model or the source has none.
        A duration model at another frame rate is re-timed by rounding its cumulative sum (total kept)."""
        if self.model.cfg.alignment != "durations" or not hasattr(self.length, "frame_durations"):
            return None
        return planned_durations(self.length, self.tokenizer, text, speed)

    def n_frames(self, text: str, speed: float = 1.0) -> int:
        """Frames `generate` makes for `text` (the planned durations' sum, else the length source's count)."""
        d = self.plan_durations(text, speed)
        return sum(d) if d is not None else self.length.n_frames(text, speed)

    def speaker_id(self, speaker: int | str | None) -> int:
        """A speaker name from the corpus, or its index; None = the first speaker."""
        if speaker is None:
            return 0
        if isinstance(speaker, str) and speaker in self.speakers:
            return self.speakers.index(speaker)
        try:
            idx = int(speaker)
        except (TypeError, ValueError):
            raise ConfigError(f"unknown speaker {speaker!r} (known: {self.speakers[:10]})") from None
        if not 0 <= idx < len(self.speakers):
            raise ConfigError(f"speaker index {idx} out of range [0, {len(self.speakers)})")
        return idx

    def generate(
        self,
        text: str,
        speaker: int | str | None = None,
        *,
        speed: float = 1.0,
        n_frames: int | None = None,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        durations: Sequence[int] | None = None,
        decode: str = "codes",
        reference: SpeakerReference | None = None,
    ) -> torch.Tensor:
        """Codes [K, F] (probabilities [K, F, N] with decode="soft"). The length comes from the part's length
        source unless n_frames or durations (frames per token of `self.tokenizer.encode(text)`) are given;
        a model trained on durations gets the length source's per-token durations (`plan_durations`)."""
        if n_frames is None and durations is None:
            durations = self.plan_durations(text, speed)
        return generate(
            self.model,
            text,
            self.speaker_id(speaker),
            n_frames=n_frames,
            length_source=None if n_frames is not None or durations is not None else self.length,
            tokenizer=self.tokenizer,
            speed=speed,
            sampling=sampling,
            seed=seed,
            durations=durations,
            decode=decode,
            speaker_vector=self.speaker_vector(speaker, reference),
        )

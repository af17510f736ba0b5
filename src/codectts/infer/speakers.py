"""Which speaker a cloning part speaks as: a reference clip's speaker vector, or a training speaker's mean.

Shared by every engine conditioned on speaker vectors (the TRM's and the aligned CSM's `--speaker-vectors`
parts): a clip of anyone gives its own vector (the encoder the part was trained with, resemblyzer), a
training speaker by name gives the mean of that speaker's training vectors (kept in the part's config).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from codectts.errors import CheckpointError, ConfigError


def _cannot_clone(what: str) -> ConfigError:
    return ConfigError(f"this {what} was trained without speaker vectors (on speaker ids, or one voice): it speaks "
                       f"in the voice it was trained on and takes no reference clip")


@dataclass(frozen=True)
class SpeakerReference:
    """A voice to clone: the speaker vector of a clip (and what the clip says, kept for the record)."""

    vector: torch.Tensor  # [V]
    transcript: str


def clip_reference(wav, sr: int, transcript: str, vector_dim: int, what: str) -> SpeakerReference:
    """The speaker vector of mono audio [T] at `sr`, checked against the part's size `vector_dim`."""
    from codectts.eval.speaker import embed

    if not vector_dim:
        raise _cannot_clone(what)
    wav = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, dtype=np.float32)
    vec = torch.from_numpy(embed(wav, sr)).float()
    if vec.numel() != vector_dim:
        raise ConfigError(f"the speaker encoder gives {vec.numel()} values; this {what} takes {vector_dim}")
    return SpeakerReference(vec, transcript)


def choose_vector(vector_dim: int, name: str, means: dict[str, list[float]] | None,
                  reference: SpeakerReference | None, what: str) -> torch.Tensor | None:
    """What a part is conditioned on: None for a part without speaker vectors (a reference is an error
    there), else the reference's vector, else training speaker `name`'s mean vector."""
    if not vector_dim:
        if reference is not None:
            raise _cannot_clone(what)
        return None
    if reference is not None:
        if not isinstance(reference, SpeakerReference):
            raise ConfigError(f"this {what} clones from a speaker vector: make the reference with "
                              f"Synthesizer.reference(clip, transcript)")
        return reference.vector
    if not means:
        raise CheckpointError(f"this cloning {what} part has no speaker vectors of its training speakers")
    if name not in means:
        raise ConfigError(f"this part has no speaker vector for {name!r}; give a reference clip")
    return torch.tensor(means[name])

"""Talker generation: the sampling loops around `Talker.prefill` / `Talker.step` (as CSMGenerator is for the CSM).

Two loops, one per way the Talker knows where an utterance ends:

- `aligned`: the duration model fixed the length: exactly sum(durations) frames, each frame's input is
  the previous frame plus its phoneme conditioning;
- `prefix` (and the seed's unconditional mode): frames until every item emitted EOS or `max_frames`.

Both sample a frame the same way (`sample_frame`: codebook by codebook, so depth heads see the codes
already chosen) and yield code chunks [B, K, n] (all frames at once when chunk_frames is 0).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from codectts.models.sampling import SamplingConfig, sample_logits
from codectts.models.talker import Talker


class TalkerGenerator:
    """Receives a Talker; owns sampling, chunking and stopping."""

    def __init__(self, model: Talker):
        self.model = model.eval()

    def sample_frame(self, h: torch.Tensor, sampling: SamplingConfig | None,
                     generator: torch.Generator | None) -> torch.Tensor:
        """State h [B, D] -> codes [B, K], codebook 0 first (depth heads condition on the earlier ones)."""
        codes: list[torch.Tensor] = []
        for k in range(self.model.cfg.n_codebooks):
            codes.append(sample_logits(self.model.codebook_logits(h, k, codes), sampling, generator))
        return torch.stack(codes, 1)

    @torch.no_grad()
    def aligned(self, text: torch.Tensor, durations: torch.Tensor, sampling: SamplingConfig | None = None, *,
                speaker: torch.Tensor | None = None, chunk_frames: int = 0, generator: torch.Generator | None = None,
                window: int | None = None, text_window: int | None = None) -> Iterator[torch.Tensor]:
        """Aligned mode: exactly sum(durations) frames per item (batch items padded to the longest).

        `window` (frames) and `text_window` (phonemes) bound attention spans for inputs longer than
        the training utterances (see docs/talker.md); None = unbounded, as in training.
        """
        m = self.model
        lengths = (text != 0).sum(1)
        cond, _ = m.frame_conditioning(text, lengths, durations, speaker=speaker, text_window=text_window)
        if hasattr(m, "aligned_frames"):  # a backend that runs the whole frame in one call (infer/onnx_talker.py)
            frames = m.aligned_frames(cond, sampling, generator, window)
        else:
            frames = self._aligned_frames(cond, sampling, generator, window)
        yield from chunked(frames, chunk_frames)

    def _aligned_frames(self, cond: torch.Tensor, sampling: SamplingConfig | None,
                        generator: torch.Generator | None, window: int | None) -> Iterator[torch.Tensor]:
        m, n = self.model, cond.shape[1]
        caches = m.make_caches(cond.shape[0], n, cond.device, window=window)
        h = m.prefill(caches, cond=cond)
        for t in range(n):
            frame = self.sample_frame(h, sampling, generator)
            yield frame
            if t + 1 < n:
                h = m.step(frame, caches, cond[:, t + 1 : t + 2])

    @torch.no_grad()
    def prefix(self, text: torch.Tensor | None, max_frames: int, sampling: SamplingConfig | None = None, *,
               speaker: torch.Tensor | None = None, chunk_frames: int = 0,
               generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Prefix / unconditional modes: frames until every item emitted EOS, or `max_frames`.

        The EOS frame itself is not yielded; in a batch, an item that finished early gets EOS codes
        (= codebook_size) for its remaining frames, for the caller to trim.
        """
        yield from chunked(self._prefix_frames(text, max_frames, sampling, speaker, generator), chunk_frames)

    def _prefix_frames(self, text: torch.Tensor | None, max_frames: int, sampling: SamplingConfig | None,
                       speaker: torch.Tensor | None, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
        m, cfg = self.model, self.model.cfg
        eos = cfg.codebook_size
        b = text.shape[0] if text is not None else 1
        device = text.device if text is not None else m.device
        p = text.shape[1] if (text is not None and cfg.conditioning == "prefix") else 0
        caches = m.make_caches(b, p + max_frames + 1, device)
        h = m.prefill(caches, text if p else None, speaker, batch=b)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        for i in range(max_frames):
            frame = self.sample_frame(h, sampling, generator)
            if cfg.conditioning == "prefix":
                is_eos = frame[:, 0] == eos
                frame = torch.where((done | is_eos)[:, None], torch.full_like(frame, eos), frame).clamp(max=eos)
                done = done | is_eos
                if bool(done.all()):
                    break
            yield frame
            if i + 1 < max_frames:  # an EOS code in a codebook is fed back as the last real code
                h = m.step(frame.clamp(max=eos - 1) if cfg.conditioning == "prefix" else frame, caches)


def chunked(frames: Iterator[torch.Tensor], chunk_frames: int) -> Iterator[torch.Tensor]:
    """Frames [B, K] -> code chunks [B, K, n] of `chunk_frames` (all at once when 0), the last one shorter."""
    buf: list[torch.Tensor] = []
    for frame in frames:
        buf.append(frame)
        if chunk_frames and len(buf) == chunk_frames:
            yield torch.stack(buf, 2)
            buf = []
    if buf:
        yield torch.stack(buf, 2)

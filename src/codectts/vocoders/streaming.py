"""Chunked, streaming vocoding: push mel frames as they are generated, get audio as soon as it is final.

Each chunk of `chunk_frames` is vocoded inside a window with `left` frames of past and `right`
frames of future context; only the chunk's own samples are kept. For a convolutional vocoder
(HiFi-GAN) with context >= its receptive field this reproduces the full-utterance output exactly.
Griffin-Lim has no finite receptive field, so two more things make its seams inaudible:
the window's past frames start from the phase of audio already played (`prefix`), and each
chunk overlaps the next by `crossfade_frames`, blended with a raised-cosine fade.

Latency: a chunk is emitted once `right` frames past its end have arrived.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from codectts.errors import AudioError, ConfigError
from codectts.vocoders.base import Vocoder, check_mel

DEFAULT_CHUNK_FRAMES = 32
# Griffin-Lim defaults, measured (docs/vocoders.md): with 8 past frames held at the played phase and a
# crossfade as long as one analysis window (n_fft / hop = 4 frames), log-mel error near seams matches
# the full-utterance reconstruction; 4 future frames = 46 ms of latency at 22.05 kHz / hop 256.
GL_LEFT_FRAMES = 8
GL_RIGHT_FRAMES = 4
GL_CROSSFADE_FRAMES = 4


@dataclass(frozen=True)
class StreamConfig:
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    left: int = GL_LEFT_FRAMES
    right: int = GL_RIGHT_FRAMES
    crossfade_frames: int = GL_CROSSFADE_FRAMES
    # Chunks double after the first, up to this (None: all chunks are chunk_frames). The first chunk stays
    # small for latency; later ones only need to arrive before the audio already sent has played, and a
    # vocoder with a wide context recomputes left + right frames per chunk, so fewer chunks cost less.
    max_chunk_frames: int | None = None

    def __post_init__(self):
        if self.chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.max_chunk_frames is not None and self.max_chunk_frames < self.chunk_frames:
            raise ConfigError(f"max_chunk_frames {self.max_chunk_frames} is below chunk_frames {self.chunk_frames}")
        if min(self.left, self.right, self.crossfade_frames) < 0:
            raise ConfigError("context and crossfade frames must be >= 0")
        if self.crossfade_frames > self.right:
            raise ConfigError(f"crossfade_frames {self.crossfade_frames} needs as many frames of right context "
                              f"(right={self.right})")


def stream_config_for(vocoder: Vocoder, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> StreamConfig:
    """Context that makes chunks seamless for this vocoder: its receptive field when it has one, on both sides.

    A shorter look-ahead was measured for the shipped Vocos and rejected: with 16 of its 30 frames the
    chunked output is 0.045 log-mel L1 from the whole one (0.12 near seams), with 24 still 0.001
    (benchmarks/vocoder_streaming.py, docs/vocoders.md). The look-ahead costs the time to generate those
    frames, not their duration."""
    rf = getattr(vocoder, "context_frames", None)
    if rf is not None:  # exact for any chunking, so chunks may grow: up to 4 receptive fields
        return StreamConfig(chunk_frames, left=rf, right=rf, crossfade_frames=0,
                            max_chunk_frames=max(chunk_frames, 4 * rf))
    return StreamConfig(chunk_frames)


class VocoderStream:
    """Incremental mel -> wav. `push(mel [B, M, f])` returns the samples that are final; `flush()` the rest.

    The concatenation of everything returned has exactly (frames pushed) * hop samples per row.
    """

    def __init__(self, vocoder: Vocoder, cfg: StreamConfig | None = None):
        self.vocoder = vocoder
        self.cfg = cfg or stream_config_for(vocoder)
        self.hop = vocoder.mel.hop_length
        self.reset()

    def reset(self) -> None:
        self.mel: torch.Tensor | None = None  # frames not yet discarded, [B, M, n]
        self.offset = 0  # absolute index of self.mel[..., 0]
        self.done = 0  # frames whose samples have been returned
        self.chunk = self.cfg.chunk_frames  # size of the next chunk (grows up to max_chunk_frames)
        self.played: torch.Tensor | None = None  # last samples returned (prefix for Griffin-Lim)
        self.pending: torch.Tensor | None = None  # samples past `done` from the last chunk, to crossfade
        self.finished = False

    @property
    def total(self) -> int:
        return self.offset + (self.mel.shape[-1] if self.mel is not None else 0)

    def push(self, mel: torch.Tensor) -> torch.Tensor:
        if self.finished:
            raise AudioError("stream already flushed; call reset() to start a new utterance")
        mel = check_mel(mel, self.vocoder.mel, "vocoder stream")
        if self.mel is not None and mel.shape[0] != self.mel.shape[0]:
            raise AudioError(f"batch size changed mid-stream ({self.mel.shape[0]} -> {mel.shape[0]})")
        self.mel = mel if self.mel is None else torch.cat([self.mel, mel.to(self.mel)], dim=-1)
        out = []
        while self.total - self.done >= self.chunk + self.cfg.right:
            out.append(self._emit(self.done + self.chunk, final=False))
            self.chunk = min(2 * self.chunk, self.cfg.max_chunk_frames or self.cfg.chunk_frames)
        return self._cat(out, mel.shape[0])

    def flush(self) -> torch.Tensor:
        """Vocode whatever is left (no more future context will come)."""
        out = []
        if self.mel is not None:
            while self.done < self.total:
                out.append(self._emit(min(self.done + self.chunk, self.total), final=True))
        self.finished = True
        return self._cat(out, self.mel.shape[0] if self.mel is not None else 1)

    def _cat(self, parts: list[torch.Tensor], batch: int) -> torch.Tensor:
        return torch.cat(parts, dim=-1) if parts else torch.zeros(batch, 0)

    def _emit(self, end: int, final: bool) -> torch.Tensor:
        cfg, hop = self.cfg, self.hop
        start = self.done
        a = max(self.offset, start - cfg.left)
        b = self.total if final else min(self.total, end + cfg.right)
        window = self.mel[..., a - self.offset:b - self.offset]
        if getattr(self.vocoder, "accepts_prefix", False) and self.played is not None:
            known = self.played[:, self.played.shape[-1] - (start - a) * hop:] if start > a else self.played[:, :0]
            prefix = known if self.pending is None else torch.cat([known, self.pending], dim=-1)
            wav = self.vocoder(window, prefix=prefix)
        else:
            wav = self.vocoder(window)
        wav = wav.reshape(window.shape[0], -1)
        extra = 0 if final else min(cfg.crossfade_frames, b - end) * hop
        seg = wav[:, (start - a) * hop:(end - a) * hop + extra]
        if self.pending is not None and self.pending.shape[-1]:
            n = self.pending.shape[-1]
            fade = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, n + 2, device=seg.device)[1:-1])
            seg = seg.clone()
            seg[:, :n] = self.pending.to(seg) * (1 - fade) + seg[:, :n] * fade
        n_out = (end - start) * hop
        out, self.pending = seg[:, :n_out], (seg[:, n_out:] if extra else None)
        self.done = end
        played = out if self.played is None else torch.cat([self.played, out], dim=-1)
        self.played = played[:, played.shape[-1] - min(played.shape[-1], cfg.left * hop):]
        # Discard frames no later window can need.
        drop = max(0, self.done - cfg.left - self.offset)
        if drop:
            self.mel = self.mel[..., drop:]
            self.offset += drop
        return out


def vocode_chunked(vocoder: Vocoder, mel: torch.Tensor, cfg: StreamConfig | None = None) -> torch.Tensor:
    """Offline helper: vocode a whole mel chunk by chunk (what streaming produces), [B, M, F] -> [B, F * hop]."""
    stream = VocoderStream(vocoder, cfg)
    mel = check_mel(mel, vocoder.mel, "vocode_chunked")
    parts = [stream.push(mel[..., i:i + stream.cfg.chunk_frames])
             for i in range(0, mel.shape[-1], stream.cfg.chunk_frames)]
    parts.append(stream.flush())
    return torch.cat(parts, dim=-1)

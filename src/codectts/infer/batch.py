"""Batched decoding for a server: concurrent sentences of an aligned Talker share one step per frame.

On a CPU a Talker frame at batch 1 is ~1,700 small torch ops, most of them per-op overhead
(docs/speed.md); stepping B sentences as one batch pays that overhead once per frame instead of B
times. `BatchedTalker.aligned` has `TalkerGenerator.aligned`'s signature and yields the same chunks:
the calling (worker) thread computes the sentence's conditioning and adds the sentence to the batch;
whenever a caller needs a frame and no step is running, it runs the next step for all sentences and
puts each its frame (a queue per sentence). A sentence alone is thus stepped in its own thread, as
without batching; several share their steps while their threads also decode audio.

Each sentence keeps its own position, attention window, conditioning, sampling options and
torch.Generator (codes are drawn row by row with `sample_logits`, so each generator sees the same
draws as when the sentence runs alone). Sentences join at the next step and leave when they end or
when their consumer closes the iterator (a cancelled request leaves at the next step). A sentence
whose sampling fails (non-finite logits) gets the error; the others go on.

The KV cache is one tensor per layer [rows, H_kv, T, Dh]: row r holds the r-th active sentence's keys
at their positions (a leaving sentence's row is filled with the last row's, so rows stay dense), and
each step attends with a mask of the positions every row may see (<= its position, within its window).
Batched matrix products and the masked attention round differently from batch 1, so batched logits
can differ from the unbatched ones in the last bits; a code differs only if a draw lands within that
distance of a boundary (tests/test_batch.py: identical codes on a tiny talker; docs/speed.md: joe).
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from codectts.errors import CodecTTSError, GenerationError
from codectts.infer.talker import chunked
from codectts.models.blocks import apply_rope
from codectts.models.sampling import SamplingConfig, sample_logits
from codectts.models.talker import Talker

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(eq=False)
class _Sentence:
    cond: torch.Tensor  # [n, D]: each frame's conditioning
    sampling: SamplingConfig | None
    generator: torch.Generator | None
    window: int | None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # frames [1, K], then _DONE or an error
    pos: int = 0  # the next position to feed
    frame: torch.Tensor | None = None  # the last frame drawn ([K]); None: BOS comes first
    gone: bool = False  # the consumer closed its iterator

    @property
    def n(self) -> int:
        return self.cond.shape[0]


class BatchedTalker:
    """Shared decode steps for one (aligned, torch) Talker; at most `max_batch` sentences per step, the rest
    wait. No thread of its own: a caller that needs a frame while no step runs runs the next step for
    everyone (so a sentence alone runs in its caller's thread, as unbatched), then wakes the others."""

    def __init__(self, model: Talker, max_batch: int):
        if model.cfg.conditioning != "aligned":
            raise CodecTTSError("batched decoding is for aligned talkers")
        self.model, self.max_batch = model.eval(), max(1, int(max_batch))
        self._wake = threading.Condition()  # guards _waiting and _stepping; notified after every step
        self._stepping = False  # a caller is running a step
        self._waiting: list[_Sentence] = []
        self._rows: list[_Sentence] = []  # the stepping caller's; row r of the caches is _rows[r]
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self.steps = 0  # batched steps run (for tests and benchmarks)
        self.rows_stepped = 0  # sentence-frames they made

    # ---- the caller's side ---------------------------------------------------------------------
    @torch.no_grad()
    def aligned(self, text: torch.Tensor, durations: torch.Tensor, sampling: SamplingConfig | None = None, *,
                chunk_frames: int = 0, generator: torch.Generator | None = None, window: int | None = None,
                text_window: int | None = None) -> Iterator[torch.Tensor]:
        """`TalkerGenerator.aligned` for one sentence (text [1, P]), its steps batched with other callers'."""
        if text.shape[0] != 1:
            raise CodecTTSError("BatchedTalker.aligned takes one sentence at a time")
        m = self.model
        cond, _ = m.frame_conditioning(text, (text != 0).sum(1), durations, text_window=text_window)
        return self._frames(_Sentence(cond[0], sampling, generator, window), chunk_frames)

    def _frames(self, s: _Sentence, chunk_frames: int) -> Iterator[torch.Tensor]:
        if s.n == 0:
            return
        with self._wake:
            self._waiting.append(s)
        try:
            yield from chunked(self._own_frames(s), chunk_frames)
        finally:
            s.gone = True  # closed early (cancelled, or the consumer failed): leave at the next step

    def _own_frames(self, s: _Sentence) -> Iterator[torch.Tensor]:
        while (item := self._next(s)) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _next(self, s: _Sentence):
        """The sentence's next item: one already made, else run a step (when none runs) or wait for one."""
        while True:
            with self._wake:
                while True:
                    if not s.out.empty():
                        return s.out.get()
                    if not self._stepping:
                        self._stepping = True
                        break
                    self._wake.wait()
            try:
                with torch.no_grad():
                    self._round()
            finally:
                with self._wake:
                    self._stepping = False
                    self._wake.notify_all()

    def _round(self) -> None:
        """Admit waiting sentences, drop the gone ones, run one step (by whichever caller holds _stepping)."""
        with self._wake:
            while self._waiting and len(self._rows) < self.max_batch:
                self._join(self._waiting.pop(0))
        for r in reversed(range(len(self._rows))):
            if self._rows[r].gone:
                self._leave(r)
        if self._rows:
            self._step()
        else:
            self._k, self._v = [], []  # idle: free the caches

    def _join(self, s: _Sentence) -> None:
        """A new row at the end; the caches make room for it."""
        self._make_room(s)
        self._rows.append(s)

    def _leave(self, r: int) -> None:
        """Row r goes; the last row takes its place, so rows stay dense."""
        last = len(self._rows) - 1
        self._drop_row(r, last)
        if r != last:
            self._rows[r] = self._rows[last]
        self._rows.pop()

    def _make_room(self, s: _Sentence) -> None:
        """Caches of max_batch rows that grow (positions) to hold the longest sentence."""
        tc = self.model.transformer.cfg
        length = max(x.n for x in (*self._rows, s))
        if not self._k or self._k[0].shape[2] < length:
            w = self.model.heads[0].weight
            shape = (self.max_batch, tc.n_kv_heads, length, tc.head_dim)
            k = [torch.zeros(shape, dtype=w.dtype, device=w.device) for _ in range(tc.n_layers)]
            v = [torch.zeros_like(t) for t in k]
            for old, new in zip((*self._k, *self._v), (*k, *v), strict=False):  # none when idle before
                new[:, :, : old.shape[2]] = old
            self._k, self._v = k, v

    def _drop_row(self, r: int, last: int) -> None:
        if r != last:
            for t in (*self._k, *self._v):
                t[r] = t[last]

    def _step(self) -> None:
        rows = self._rows
        try:
            frames = self._advance(rows)
        except Exception as e:  # noqa: BLE001 - the model failed for the whole batch: every row gets the error
            err = e if isinstance(e, CodecTTSError) else GenerationError(f"batched step failed: {e}")
            for s in rows:
                s.out.put(err)
            self._rows = []
            return
        self.steps += 1
        self.rows_stepped += len(rows)
        for r in reversed(range(len(rows))):
            s, frame = rows[r], frames[r]
            if isinstance(frame, BaseException):
                s.out.put(frame)
                self._leave(r)
                continue
            s.out.put(frame[None])
            s.frame, s.pos = frame, s.pos + 1
            if s.pos == s.n:
                s.out.put(_DONE)
                self._leave(r)

    def _advance(self, rows: list[_Sentence]) -> list[torch.Tensor | BaseException]:
        """Every row's next frame [K] (or the error that row's sampling met)."""
        return self._sample(self._forward(rows), rows)

    def _sample(self, h: torch.Tensor, rows: list[_Sentence]) -> list[torch.Tensor | BaseException]:
        """Codebook by codebook (depth heads see the codes chosen), each row with its own generator."""
        m = self.model
        codes: list[torch.Tensor] = []
        failed: dict[int, BaseException] = {}
        for k in range(m.cfg.n_codebooks):
            logits = m.codebook_logits(h, k, codes)
            picked = []
            for r, s in enumerate(rows):
                if r in failed:
                    picked.append(torch.zeros(1, dtype=torch.long, device=h.device))
                    continue
                try:
                    picked.append(sample_logits(logits[r : r + 1], s.sampling, s.generator))
                except CodecTTSError as e:
                    failed[r] = e
                    picked.append(torch.zeros(1, dtype=torch.long, device=h.device))
            codes.append(torch.cat(picked))
        frames = torch.stack(codes, 1)  # [B, K]
        return [failed.get(r, frames[r]) for r in range(len(rows))]

    def _forward(self, rows: list[_Sentence]) -> torch.Tensor:
        """One step for every row at its own position -> the states [B, D] that predict the next frames."""
        m = self.model
        tr = m.transformer
        cfg = tr.cfg
        b, hd = len(rows), cfg.head_dim
        device = m.heads[0].weight.device
        bos = torch.full((m.cfg.n_codebooks,), m.cfg.bos_code, dtype=torch.long, device=device)
        frame = torch.stack([s.frame if s.frame is not None else bos for s in rows])  # [B, K]
        pos = torch.tensor([s.pos for s in rows], device=device)
        x = m.embed_frames(frame[:, :, None]) + torch.stack([s.cond[s.pos] for s in rows])[:, None]  # [B, 1, D]
        span = max(s.pos for s in rows) + 1
        lows = [max(0, s.pos + 1 - s.window) if s.window else 0 for s in rows]
        mask = None  # every row sees all `span` positions (one sentence, no window yet): as unbatched
        if any(s.pos + 1 < span or lo > 0 for s, lo in zip(rows, lows, strict=True)):
            slots = torch.arange(span, device=device)
            lo = torch.tensor(lows, device=device)
            seen = (slots[None] <= pos[:, None]) & (slots[None] >= lo[:, None])  # [B, S]
            mask = torch.zeros(seen.shape, dtype=x.dtype, device=device).masked_fill_(~seen, float("-inf"))
            mask = mask[:, None, None, :]  # additive, made once per step rather than by SDPA in every layer
        cos, sin = tr.cos[pos][:, None, None, :], tr.sin[pos][:, None, None, :]
        at = torch.arange(b, device=device)
        for i, layer in enumerate(tr.layers):
            a = layer.attn
            hn = layer.attn_norm(x)
            q = apply_rope(a.wq(hn).view(b, 1, cfg.n_heads, hd).transpose(1, 2), cos, sin)  # [B, H, 1, Dh]
            k = apply_rope(a.wk(hn).view(b, 1, cfg.n_kv_heads, hd).transpose(1, 2), cos, sin)
            v = a.wv(hn).view(b, 1, cfg.n_kv_heads, hd).transpose(1, 2)
            self._k[i][at, :, pos] = k[:, :, 0]
            self._v[i][at, :, pos] = v[:, :, 0]
            out = F.scaled_dot_product_attention(q, self._k[i][:b, :, :span], self._v[i][:b, :, :span],
                                                 attn_mask=mask, enable_gqa=True)
            x = x + a.wo(out.transpose(1, 2).reshape(b, 1, -1))
            x = x + layer.ffn(layer.ffn_norm(x))
        return tr.norm(x)[:, 0]

"""CSM / Marvis-style model: a backbone over interleaved text and audio frames predicts codebook 0 of
the next frame; a small depth decoder predicts codebooks 1..K-1 inside that frame.

Sequence layout (one tensor layout, stated once). A sequence is a run of *segments*; each segment is
its text tokens (BOS ... EOS), then its audio frames, then one EOS frame:

    position:   t t t t | a a a a a | E | t t t | a a ... | E
    text     [B, S]     token ids at text positions (PAD elsewhere)
    audio    [B, S, K]  codes at audio positions (0 elsewhere)
    audio_mask [B, S]   True at audio positions, EOS frames included

A text position enters the backbone as its text embedding; an audio frame as the sum of its K codebook
embeddings (one table, codebook k's rows offset by k * (codebook_size + 1)). The backbone's output at
position s predicts codebook 0 of the frame at s + 1 whenever s + 1 is audio. For that frame the depth
decoder sees [proj(h_s), proj(emb(c0)), ..., proj(emb(c_{K-2}))] and its output at position k predicts
c_k; its KV cache is reset every frame.

Aligned mode (`conditioning="aligned"`, our addition; the seed's layout above is "interleaved"). The
backbone sees frames only: position t takes the previous frame (the EOS frame before the first) plus
the conditioning of frame t: a bidirectional phoneme encoder's output for the phoneme that frame belongs
to, by durations (the teacher's in training, a duration model's at inference), with the frame's offset
and frames left inside that phoneme, as the aligned Talker does. The model need not learn where it is
in the text, which an interleaved model must find on its own (and on a CPU budget does not); the
duration model sets the length, so there is no end-of-speech to emit. With `speaker_vector_dim` V > 0
(aligned only) every frame's conditioning also carries a projected speaker vector [B, V] (a d-vector of a
clip of the speaker, as the cloning TRM): the voice is read from one clip, which is how it clones.

End of speech: a dedicated EOS code, `eos_code = codebook_size`, one extra row per codebook in the
embedding table and one extra class in the codebook-0 head; the EOS frame is all codebooks = eos_code.
(CSM uses an all-zero frame instead; zero is a real code, e.g. every code of a silent frame of some
codecs, so a frame of real audio could stop generation.) Right-padded batches need no attention mask:
attention is causal and padding carries no targets.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from codectts.errors import ConfigError, DataError
from codectts.models.blocks import (
    KVCache,
    Transformer,
    TransformerConfig,
    count_params,
    make_caches,
    padding_mask,
)
from codectts.models.talker import MAX_IN_PHONEME, length_regulate
from codectts.parts import PartConfig, PartModel, make_preset

TEXT_PAD_ID = 0  # codectts.text tokenizers: PAD=0, BOS=1, EOS=2
CONDITIONING = ("interleaved", "aligned")


@dataclass
class CSMConfig(PartConfig):
    text_vocab_size: int = 64
    n_codebooks: int = 8
    codebook_size: int = 1024
    # backbone (one position per text token or audio frame)
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int = 768
    max_seq_len: int = 1024
    # depth decoder (one position per codebook of one frame)
    decoder_dim: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_kv_heads: int = 2
    decoder_ffn_dim: int = 384
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    conditioning: str = "interleaved"  # the seed's text-then-frames sequence | "aligned" (frames + durations)
    text_layers: int = 3  # aligned: depth of the bidirectional phoneme encoder (backbone width)
    prev_frame_dropout: float = 0.0  # aligned, training: hide the previous frame sometimes (rely on the text)
    speaker_vector_dim: int = 0  # aligned: > 0 conditions every frame on a speaker vector of this size (cloning)

    def __post_init__(self):
        if self.speaker_vector_dim < 0:
            raise ConfigError(f"CSMConfig.speaker_vector_dim must be >= 0, got {self.speaker_vector_dim}")
        if self.speaker_vector_dim and self.conditioning != "aligned":
            raise ConfigError("speaker vectors condition an aligned CSM; an interleaved one clones from its context")
        if self.conditioning not in CONDITIONING:
            raise ConfigError(f"conditioning must be one of {CONDITIONING}, got {self.conditioning!r}")
        if self.conditioning == "aligned" and self.text_layers < 1:
            raise ConfigError("aligned conditioning needs text_layers >= 1")
        if self.n_codebooks < 2:
            raise ConfigError(f"CSM needs at least 2 codebooks (1 for the backbone, the rest for the decoder), "
                              f"got n_codebooks={self.n_codebooks}")
        for name in ("text_vocab_size", "codebook_size", "dim", "n_layers", "decoder_dim", "decoder_layers",
                     "max_seq_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"CSMConfig.{name} must be positive, got {getattr(self, name)}")
        _ = (self.backbone_config, self.decoder_config)  # validates heads / dims now, not at first use

    @property
    def eos_code(self) -> int:
        return self.codebook_size

    @property
    def audio_vocab(self) -> int:
        """Rows per codebook in the embedding table: the codes plus EOS."""
        return self.codebook_size + 1

    @property
    def backbone_config(self) -> TransformerConfig:
        return TransformerConfig(dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                                 ffn_dim=self.ffn_dim, max_seq_len=self.max_seq_len, rope_theta=self.rope_theta,
                                 norm_eps=self.norm_eps, dropout=self.dropout)

    @property
    def text_encoder_config(self) -> TransformerConfig:
        return replace(self.backbone_config, n_layers=self.text_layers, causal=False)

    @property
    def aligned(self) -> bool:
        return self.conditioning == "aligned"

    @property
    def decoder_config(self) -> TransformerConfig:
        return TransformerConfig(dim=self.decoder_dim, n_layers=self.decoder_layers, n_heads=self.decoder_heads,
                                 n_kv_heads=self.decoder_kv_heads, ffn_dim=self.decoder_ffn_dim,
                                 max_seq_len=self.n_codebooks, rope_theta=self.rope_theta, norm_eps=self.norm_eps,
                                 dropout=self.dropout)


# Named sizes. Data-dependent fields (text_vocab_size, n_codebooks, codebook_size) are filled by `preset`.
PRESETS: dict[str, dict] = {
    # unit tests: builds and runs in milliseconds
    "tiny": {
        "dim": 64,
        "n_layers": 2,
        "n_heads": 4,
        "n_kv_heads": 2,
        "ffn_dim": 128,
        "max_seq_len": 512,
        "decoder_dim": 32,
        "decoder_layers": 1,
        "decoder_heads": 2,
        "decoder_kv_heads": 1,
        "decoder_ffn_dim": 64,
    },
    # CPU experiments: 4.7 M backbone, in the d 256 range that trains at a few thousand tokens/s on 2 cores
    "small": {
        "dim": 256,
        "n_layers": 6,
        "n_heads": 4,
        "n_kv_heads": 2,
        "ffn_dim": 768,
        "max_seq_len": 1024,
        "decoder_dim": 128,
        "decoder_layers": 2,
        "decoder_heads": 4,
        "decoder_kv_heads": 2,
        "decoder_ffn_dim": 384,
    },
    # seed 004: Llama "250M" backbone (6 layers, d 1536, 12 q / 3 kv heads, FFN 8192) + "60M" depth decoder
    # (4 layers, d 1024, 8 q / 2 kv heads, FFN 4096) over Mimi 32 x 2048; RoPE base 500k, 2048 positions
    "marvis": {
        "dim": 1536,
        "n_layers": 6,
        "n_heads": 12,
        "n_kv_heads": 3,
        "ffn_dim": 8192,
        "max_seq_len": 2048,
        "decoder_dim": 1024,
        "decoder_layers": 4,
        "decoder_heads": 8,
        "decoder_kv_heads": 2,
        "decoder_ffn_dim": 4096,
        "rope_theta": 500_000.0,
        "n_codebooks": 32,
        "codebook_size": 2048,
    },
}


def preset(name: str, **overrides) -> CSMConfig:
    """A named size with the data-dependent fields (and anything else) overridden."""
    return make_preset(CSMConfig, PRESETS, name, overrides)


@dataclass
class CSMOutput:
    """Teacher-forced forward. Logits are for the target frames only (flattened over the batch)."""

    loss: torch.Tensor
    backbone_loss: torch.Tensor
    decoder_loss: torch.Tensor
    c0_logits: torch.Tensor  # [N, codebook_size + 1]: every frame that follows a position
    c0_targets: torch.Tensor  # [N]
    decoder_logits: torch.Tensor  # [M, K - 1, codebook_size]: the frames the decoder was trained on
    decoder_targets: torch.Tensor  # [M, K - 1]
    accuracy: list[float] = field(default_factory=list)  # per codebook (0 = backbone)


@dataclass
class FrameOutput:
    """One generated frame: codes [B, K] (all eos_code where codebook 0 chose EOS) and the logits used."""

    codes: torch.Tensor
    c0_logits: torch.Tensor  # [B, codebook_size + 1]
    logits: torch.Tensor | None  # [B, K - 1, codebook_size]; None when every row chose EOS

    def is_eos(self, eos_code: int) -> torch.Tensor:
        return self.codes[:, 0] == eos_code


Sampler = Callable[[torch.Tensor, int], torch.Tensor]  # (logits [B, V], codebook index) -> codes [B]


class CSM(PartModel, nn.Module):
    model_type = "csm"
    config_class = CSMConfig

    def __init__(self, cfg: CSMConfig):
        super().__init__()
        self.cfg = cfg
        self.text_embed = nn.Embedding(cfg.text_vocab_size, cfg.dim)
        self.audio_embed = nn.Embedding(cfg.n_codebooks * cfg.audio_vocab, cfg.dim)
        self.backbone = Transformer(cfg.backbone_config)
        self.projection = nn.Linear(cfg.dim, cfg.decoder_dim, bias=False)
        self.decoder = Transformer(cfg.decoder_config)
        self.c0_head = nn.Linear(cfg.dim, cfg.audio_vocab, bias=False)
        self.audio_head = nn.Parameter(torch.empty(cfg.n_codebooks - 1, cfg.decoder_dim, cfg.codebook_size))
        self.register_buffer("codebook_offset", torch.arange(cfg.n_codebooks) * cfg.audio_vocab, persistent=False)
        inits = [self.text_embed.weight, self.audio_embed.weight, self.projection.weight, self.c0_head.weight,
                 self.audio_head]
        if cfg.aligned:
            self.text_encoder = Transformer(cfg.text_encoder_config)
            self.offset_emb = nn.Embedding(MAX_IN_PHONEME + 1, cfg.dim)
            self.left_emb = nn.Embedding(MAX_IN_PHONEME + 1, cfg.dim)
            inits += [self.offset_emb.weight, self.left_emb.weight]
        if cfg.speaker_vector_dim:
            self.speaker_vector_proj = nn.Linear(cfg.speaker_vector_dim, cfg.dim, bias=False)
            inits.append(self.speaker_vector_proj.weight)
        for w in inits:
            nn.init.normal_(w, std=0.02)

    # ---- sizes -------------------------------------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        parts = {
            "backbone": count_params(self.backbone),
            "decoder": count_params(self.decoder),
            "embeddings": count_params(self.text_embed) + count_params(self.audio_embed),
            **({"text_encoder": count_params(self.text_encoder) + count_params(self.offset_emb)
                + count_params(self.left_emb)} if self.cfg.aligned else {}),
            **({"speaker": count_params(self.speaker_vector_proj)} if self.cfg.speaker_vector_dim else {}),
            "heads": count_params(self.c0_head) + self.audio_head.numel() + count_params(self.projection),
        }
        parts["total"] = sum(parts.values())
        return parts

    # ---- embeddings ----------------------------------------------------------------------------
    def embed_codes(self, codes: torch.Tensor, first_codebook: int = 0) -> torch.Tensor:
        """codes [..., n] of codebooks first..first+n-1 -> embeddings [..., n, D]."""
        n = codes.shape[-1]
        return self.audio_embed(codes + self.codebook_offset[first_codebook : first_codebook + n])

    def embed(self, text: torch.Tensor, audio: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        """[B, S], [B, S, K], [B, S] -> [B, S, D]: text embedding, or the sum of a frame's codebook embeddings."""
        a = self.embed_codes(audio).sum(-2)  # [B, S, D]
        t = self.text_embed(text)
        return torch.where(audio_mask[..., None], a, t)

    # ---- teacher-forced training forward -----------------------------------------------------
    def decoder_logits(self, h: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Backbone states h [M, D] and their target frames [M, K] -> logits [M, K - 1, codebook_size]."""
        seq = torch.cat([h[:, None], self.embed_codes(frames[:, :-1])], dim=1)  # [M, K, D]
        out = self.decoder(self.projection(seq))  # [M, K, Dd]
        return torch.einsum("mkd,kdv->mkv", out[:, 1:], self.audio_head)

    def forward(self, *batch: torch.Tensor, decoder_fraction: float = 1.0,
                generator: torch.Generator | None = None) -> CSMOutput:
        """Teacher-forced loss = CE(codebook 0, backbone) + CE(codebooks 1..K-1, decoder). `batch` is
        (text, audio, audio_mask) for the interleaved layout (`forward_interleaved`), (codes, frame_lengths,
        text, text_lengths, durations[, speaker_vector]) in aligned mode (`forward_aligned`).

        `decoder_fraction` < 1 trains the decoder on a random subset of frames (CSM's compute amortisation;
        the backbone always sees every frame).
        """
        fn = self.forward_aligned if self.cfg.aligned else self.forward_interleaved
        return fn(*batch, decoder_fraction=decoder_fraction, generator=generator)

    def forward_interleaved(self, text: torch.Tensor, audio: torch.Tensor, audio_mask: torch.Tensor,
                            decoder_fraction: float = 1.0, generator: torch.Generator | None = None) -> CSMOutput:
        """The seed's layout: [B, S] text, [B, S, K] audio, [B, S] audio mask (module docstring)."""
        cfg = self.cfg
        if cfg.aligned:
            raise ConfigError("an aligned CSM trains on frames, phonemes and durations (forward_aligned)")
        if audio.shape[-1] != cfg.n_codebooks:
            raise DataError(f"audio has {audio.shape[-1]} codebooks, model expects {cfg.n_codebooks}")
        h = self.backbone(self.embed(text, audio, audio_mask))  # [B, S, D]
        target_mask = audio_mask[:, 1:]  # position s predicts the frame at s + 1
        return self.frame_loss(h[:, :-1][target_mask], audio[:, 1:][target_mask], decoder_fraction, generator)

    def frame_conditioning(self, text: torch.Tensor, text_lengths: torch.Tensor, durations: torch.Tensor,
                           n_frames: int | None = None, speaker_vector: torch.Tensor | None = None) -> torch.Tensor:
        """Aligned mode: phoneme ids [B, P] and their durations [B, P] -> each frame's conditioning [B, F, D];
        a model with `speaker_vector_dim` V adds its speaker vector [B, V] (unit-normalised here) to every frame."""
        enc = self.text_encoder(self.text_embed(text), mask=padding_mask(text_lengths, text.shape[1])[:, None, None])
        frames, _, offset, left, _ = length_regulate(enc, durations, n_frames)
        cond = frames + self.offset_emb(offset) + self.left_emb(left)
        v = self.cfg.speaker_vector_dim
        if v:
            if speaker_vector is None or tuple(speaker_vector.shape) != (text.shape[0], v):
                got = None if speaker_vector is None else tuple(speaker_vector.shape)
                raise ConfigError(f"this CSM reads its speaker from a vector: pass speaker_vector [{text.shape[0]}, "
                                  f"{v}], got {got}")
            spk = self.speaker_vector_proj(F.normalize(speaker_vector.float(), dim=-1).to(cond.dtype))
            cond = cond + spk[:, None, :]
        elif speaker_vector is not None:
            raise ConfigError("this CSM was trained without speaker vectors; it takes none")
        return cond

    def start_frame(self, batch: int, device=None) -> torch.Tensor:
        """The frame before the first one in aligned mode: all EOS codes ([B, K])."""
        return torch.full((batch, self.cfg.n_codebooks), self.cfg.eos_code, dtype=torch.long, device=device)

    def forward_aligned(self, codes: torch.Tensor, frame_lengths: torch.Tensor, text: torch.Tensor,
                        text_lengths: torch.Tensor, durations: torch.Tensor,
                        speaker_vector: torch.Tensor | None = None, decoder_fraction: float = 1.0,
                        generator: torch.Generator | None = None) -> CSMOutput:
        """Aligned mode, teacher-forced: codes [B, K, F] (right-padded to frame_lengths), phoneme ids [B, P]
        and durations [B, P] (each item's durations sum to its frame length), and each item's speaker
        vector [B, V] for a model with `speaker_vector_dim`."""
        cfg = self.cfg
        if not cfg.aligned:
            raise ConfigError("forward_aligned needs a CSM built with conditioning='aligned'")
        b, k, f = codes.shape
        if k != cfg.n_codebooks:
            raise DataError(f"codes have {k} codebooks, model expects {cfg.n_codebooks}")
        frames = codes.transpose(1, 2)  # [B, F, K]
        prev = torch.cat([self.start_frame(b, codes.device)[:, None], frames[:, :-1]], dim=1)
        x = self.embed_codes(prev).sum(-2)
        if self.training and cfg.prev_frame_dropout > 0:  # as the aligned Talker: lean on the text too
            x = x * (torch.rand(b, f, 1, device=x.device, generator=generator) >= cfg.prev_frame_dropout).to(x.dtype)
        x = x + self.frame_conditioning(text, text_lengths, durations, f, speaker_vector)
        valid = padding_mask(frame_lengths, f)
        return self.frame_loss(self.backbone(x)[valid], frames[valid], decoder_fraction, generator)

    def frame_loss(self, h_pred: torch.Tensor, frames: torch.Tensor, decoder_fraction: float = 1.0,
                   generator: torch.Generator | None = None) -> CSMOutput:
        """Backbone states [N, D] and the frames [N, K] they predict -> codebook-0 CE + depth-decoder CE."""
        cfg = self.cfg
        if frames.shape[0] == 0:
            raise DataError("batch holds no audio frames to predict")
        c0_logits = self.c0_head(h_pred)
        backbone_loss = F.cross_entropy(c0_logits.float(), frames[:, 0])

        real = (frames[:, 0] != cfg.eos_code).nonzero().squeeze(1)  # EOS frames have no codebooks 1..K-1
        if decoder_fraction < 1.0 and real.numel():
            keep = max(1, math.ceil(real.numel() * decoder_fraction))
            real = real[torch.randperm(real.numel(), generator=generator, device="cpu")[:keep].to(real.device)]
        dec_targets = frames[real, 1:]
        if real.numel():
            dec_logits = self.decoder_logits(h_pred[real], frames[real])
            decoder_loss = F.cross_entropy(dec_logits.flatten(0, 1).float(), dec_targets.flatten())
        else:
            dec_logits = h_pred.new_zeros(0, cfg.n_codebooks - 1, cfg.codebook_size)
            decoder_loss = h_pred.new_zeros(())
        with torch.no_grad():
            acc = [float((c0_logits.argmax(-1) == frames[:, 0]).float().mean())]
            if real.numel():
                acc += (dec_logits.argmax(-1) == dec_targets).float().mean(0).tolist()
            else:
                acc += [float("nan")] * (cfg.n_codebooks - 1)
        return CSMOutput(
            loss=backbone_loss + decoder_loss,
            backbone_loss=backbone_loss,
            decoder_loss=decoder_loss,
            c0_logits=c0_logits,
            c0_targets=frames[:, 0],
            decoder_logits=dec_logits,
            decoder_targets=dec_targets,
            accuracy=acc,
        )

    # ---- incremental decoding (explicit caches) ------------------------------------------------
    def make_caches(
        self, batch: int = 1, max_len: int | None = None, device=None, dtype=torch.float32
    ) -> tuple[list[KVCache], list[KVCache]]:
        """(backbone caches for the whole sequence, decoder caches for one frame)."""
        return (
            make_caches(self.cfg.backbone_config, batch, max_len or self.cfg.max_seq_len, device, dtype),
            make_caches(self.cfg.decoder_config, batch, self.cfg.n_codebooks, device, dtype),
        )

    def prefill(
        self, text: torch.Tensor, audio: torch.Tensor, audio_mask: torch.Tensor, caches: list[KVCache], start: int = 0
    ) -> torch.Tensor:
        """Run positions start..start+S-1 through the backbone into `caches`; returns the last state [B, D]."""
        return self.backbone(self.embed(text, audio, audio_mask), start=start, caches=caches)[:, -1]

    def step(self, frame: torch.Tensor, caches: list[KVCache], cond: torch.Tensor | None = None) -> torch.Tensor:
        """Feed one frame [B, K] at the next position (aligned mode: plus the next frame's conditioning
        `cond` [B, D]); returns the backbone state [B, D]."""
        start = caches[0].length
        x = self.embed_codes(frame).sum(-2)[:, None]  # [B, 1, D]
        if cond is not None:
            x = x + cond[:, None]
        return self.backbone(x, start=start, caches=caches)[:, 0]

    def generate_frame(
        self, h: torch.Tensor, decoder_caches: list[KVCache], sample: Sampler, forced: torch.Tensor | None = None
    ) -> FrameOutput:
        """Backbone state h [B, D] -> the next frame: codebook 0 from the backbone head, then the depth
        decoder one codebook at a time on its own cache (reset here). `forced` [B, K] replaces the sampled
        codes (teacher forcing through the exact generation path, for tests)."""
        cfg = self.cfg
        c0_logits = self.c0_head(h)  # [B, V + 1]
        c0 = forced[:, 0] if forced is not None else sample(c0_logits, 0)
        eos = c0 == cfg.eos_code
        if bool(eos.all()) and forced is None:
            return FrameOutput(
                torch.full((h.shape[0], cfg.n_codebooks), cfg.eos_code, device=h.device), c0_logits, None
            )
        for c in decoder_caches:
            c.reset()
        codes, logits = [c0], []
        x = torch.cat([h[:, None], self.embed_codes(c0[:, None])], dim=1)  # [B, 2, D]
        for k in range(1, cfg.n_codebooks):
            out = self.decoder(self.projection(x), start=decoder_caches[0].length, caches=decoder_caches)
            lk = out[:, -1] @ self.audio_head[k - 1]  # [B, V]
            ck = forced[:, k] if forced is not None else sample(lk, k)
            logits.append(lk)
            codes.append(ck)
            x = self.embed_codes(ck[:, None], first_codebook=k)  # [B, 1, D]
        frame = torch.stack(codes, dim=1)
        if forced is None:
            frame[eos] = cfg.eos_code
        return FrameOutput(frame, c0_logits, torch.stack(logits, dim=1))


# ---- sequence building (shared by training and inference) -------------------------------------
@dataclass
class Segment:
    """Text ids (with BOS/EOS) and, unless it is the prompt being continued, its codes [K, F]."""

    text_ids: Sequence[int]
    codes: torch.Tensor | None = None
    end_of_speech: bool = True  # append the EOS frame after the codes


def build_sequence(
    segments: Sequence[Segment],
    n_codebooks: int,
    eos_code: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Segments -> (text [S], audio [S, K], audio_mask [S]) in the layout of the module docstring."""
    text, audio, mask = [], [], []
    for seg in segments:
        n_text = len(seg.text_ids)
        text.append(torch.as_tensor(list(seg.text_ids), dtype=torch.long))
        audio.append(torch.zeros(n_text, n_codebooks, dtype=torch.long))
        mask.append(torch.zeros(n_text, dtype=torch.bool))
        if seg.codes is not None:
            codes = torch.as_tensor(seg.codes, dtype=torch.long)
            if codes.dim() != 2 or codes.shape[0] < n_codebooks:
                raise ConfigError(f"segment codes must be [K>={n_codebooks}, F], got {tuple(codes.shape)}")
            frames = codes[:n_codebooks].T  # [F, K]
            if frames.numel() and (frames.min() < 0 or frames.max() >= eos_code):
                raise ConfigError(f"segment codes out of range [0, {eos_code})")
            if seg.end_of_speech:
                frames = torch.cat([frames, torch.full((1, n_codebooks), eos_code, dtype=torch.long)])
            text.append(torch.full((frames.shape[0],), TEXT_PAD_ID, dtype=torch.long))
            audio.append(frames)
            mask.append(torch.ones(frames.shape[0], dtype=torch.bool))
    return torch.cat(text), torch.cat(audio), torch.cat(mask)


def collate(
    sequences: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad sequences from `build_sequence` into a batch ([B, S], [B, S, K], [B, S])."""
    pad = torch.nn.utils.rnn.pad_sequence
    return (
        pad([s[0] for s in sequences], batch_first=True, padding_value=TEXT_PAD_ID),
        pad([s[1] for s in sequences], batch_first=True),
        pad([s[2] for s in sequences], batch_first=True),
    )

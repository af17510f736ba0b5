"""Mel RVQ codec (seeds 000, 002): log-mel frames -> residual VQ codes -> log-mel frames.

The `seed` preset is exactly the seed's: one 128-bin mel frame (16 kHz, 12.5 Hz) -> proj_in Linear
128->64 (no bias) -> 2 residual codebooks of 128 x 64 -> sum -> proj_out 64->128: 32,768 parameters.
Larger presets stack `stack` consecutive mel frames into one codec frame and use small
convolutional encoders/decoders (context across neighbouring frames), more and larger codebooks.

Frame relations are explicit and checked: codec frame rate = mel.sample_rate / (mel.hop * stack);
a vocoder paired with the codec must expect the same MelConfig (its upsampling = mel hop).
Mels are standardised per bin (mean/std measured on the training corpus, stored as buffers); the
reported reconstruction MSE is on these standardised mels (1.0 = predicting each bin's mean).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from codectts.audio.mel import MelConfig, MelSpectrogram, mel_preset
from codectts.codecs.base import check_codes
from codectts.codecs.rvq import ResidualVQ, RVQOutput
from codectts.errors import AudioError, ConfigError
from codectts.parts import PartConfig, PartModel, from_dict, make_preset


@dataclass
class MelRVQConfig(PartConfig):
    mel: MelConfig = field(default_factory=lambda: mel_preset("seed"))
    stack: int = 1  # mel frames per codec frame
    arch: str = "linear"  # "linear" (the seed's projections) or "conv"
    codebook_dim: int = 64
    n_codebooks: int = 2
    codebook_size: int = 128
    hidden: int = 256  # conv arch only
    n_res_blocks: int = 2  # conv arch only
    kernel: int = 5  # conv arch only
    decoder_hidden: int = 0  # conv decoder width; 0 = `hidden` (a wider decoder can be trained on frozen codes)
    decoder_res_blocks: int = 0  # conv decoder depth; 0 = `n_res_blocks`
    commitment: float = 0.25
    quantizer_dropout: float = 0.0  # probability of training with a random prefix of codebooks

    def __post_init__(self):
        if isinstance(self.mel, dict):
            self.mel = from_dict(MelConfig, self.mel, "codec config 'mel'")
        if self.arch not in ("linear", "conv"):
            raise ConfigError(f"arch must be linear|conv, got {self.arch!r}")
        if self.stack < 1:
            raise ConfigError("stack must be >= 1")
        if self.arch == "conv" and self.kernel % 2 == 0:
            raise ConfigError("kernel must be odd")
        if self.decoder_hidden < 0 or self.decoder_res_blocks < 0:
            raise ConfigError("decoder_hidden and decoder_res_blocks must be >= 0 (0 = as the encoder)")

    @property
    def decoder_shape(self) -> tuple[int, int]:
        """(width, residual blocks) of the conv decoder."""
        return self.decoder_hidden or self.hidden, self.decoder_res_blocks or self.n_res_blocks

    @property
    def frame_dim(self) -> int:
        return self.mel.n_mels * self.stack

    @property
    def frame_rate(self) -> float:
        return self.mel.sample_rate / (self.mel.hop_length * self.stack)

    @property
    def samples_per_frame(self) -> int:
        return self.mel.hop_length * self.stack

    @property
    def bits_per_second(self) -> float:
        import math

        return self.frame_rate * self.n_codebooks * math.log2(self.codebook_size)


_STACKED = dict(mel=mel_preset("vocoder").to_dict(), stack=4, arch="conv")  # 22.05 kHz / hop 256, 21.5 Hz
PRESETS: dict[str, dict] = {
    "seed": {},  # the seed's: 16 kHz 128-bin mels at 12.5 Hz, linear projections, 2 x 128 codes
    # 4 mel frames stacked per codec frame, conv encoder/decoder (k4x512: the default voice's)
    "k4x512": dict(_STACKED, n_codebooks=4, codebook_size=512),
    "k6x1024": dict(_STACKED, n_codebooks=6, codebook_size=1024),
    "k8x1024": dict(_STACKED, n_codebooks=8, codebook_size=1024),
    "tiny": dict(_STACKED, n_codebooks=4, codebook_size=64, hidden=32, n_res_blocks=1),  # tests
}


def preset(name: str, **overrides) -> MelRVQConfig:
    return make_preset(MelRVQConfig, PRESETS, name, overrides)


class ResBlock1d(nn.Module):
    def __init__(self, ch: int, kernel: int):
        super().__init__()
        self.c1 = nn.Conv1d(ch, ch, kernel, padding=kernel // 2)
        self.c2 = nn.Conv1d(ch, ch, 1)

    def forward(self, x):
        return x + self.c2(F.gelu(self.c1(F.gelu(x))))


def conv_stack(c_in: int, c_out: int, hidden: int, n_blocks: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, hidden, kernel, padding=kernel // 2),
                         *[ResBlock1d(hidden, kernel) for _ in range(n_blocks)],
                         nn.GELU(), nn.Conv1d(hidden, c_out, 1))


@dataclass
class CodecOutput:
    recon: torch.Tensor  # standardised mel [B, n_mels, F * stack]
    target: torch.Tensor  # standardised mel, padded to a multiple of stack
    rvq: RVQOutput


class MelRVQCodec(PartModel, nn.Module):
    """Codec over log-mels. `encode(wav)` / `decode(codes)` need `self.vocoder` for the wav side;
    `MelRVQCodec.load(path, device, vocoder=...)` attaches one."""

    model_type = "mel_rvq_codec"
    config_class = MelRVQConfig

    def __init__(self, cfg: MelRVQConfig, vocoder=None):
        super().__init__()
        self.cfg = cfg
        d, fd = cfg.codebook_dim, cfg.frame_dim
        if cfg.arch == "linear":
            self.proj_in = nn.Linear(fd, d, bias=False)
            self.proj_out = nn.Linear(d, fd, bias=False)
        else:
            self.proj_in = conv_stack(fd, d, cfg.hidden, cfg.n_res_blocks, cfg.kernel)
            self.proj_out = conv_stack(d, fd, *cfg.decoder_shape, cfg.kernel)
        self.rvq = ResidualVQ(n_codebooks=cfg.n_codebooks, codebook_size=cfg.codebook_size, dim=d)
        self.register_buffer("mel_mean", torch.zeros(cfg.mel.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.mel.n_mels))
        self.melspec = MelSpectrogram(cfg.mel)
        self.vocoder = vocoder
        if vocoder is not None:
            cfg.mel.check_compatible(vocoder.mel, "codec vs vocoder")

    def __setattr__(self, name: str, value) -> None:
        if name == "vocoder":  # the wav side is not the codec's: a trained vocoder's weights stay out of its state_dict
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # Codec protocol --------------------------------------------------------------------------
    sample_rate = property(lambda self: self.cfg.mel.sample_rate)
    frame_rate = property(lambda self: self.cfg.frame_rate)
    n_codebooks = property(lambda self: self.cfg.n_codebooks)
    codebook_size = property(lambda self: self.cfg.codebook_size)

    # MelCodec protocol -----------------------------------------------------------------------
    mel = property(lambda self: self.cfg.mel)
    mel_frames_per_code = property(lambda self: self.cfg.stack)

    @property
    def context_frames(self) -> int:
        """Codec frames on each side that one decoded frame depends on (its decoder's receptive half-width)."""
        if self.cfg.arch == "linear":
            return 0
        return (self.cfg.kernel // 2) * (1 + self.cfg.decoder_shape[1])

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp(min=1e-3))

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.mel_std[:, None] + self.mel_mean[:, None]

    def pad_to_stack(self, mel: torch.Tensor) -> torch.Tensor:
        """Pad log-mel [B, M, T] at the end with silence to a multiple of `stack` frames."""
        extra = (-mel.shape[-1]) % self.cfg.stack
        return F.pad(mel, (0, extra), value=self.cfg.mel.log_min) if extra else mel

    def _stack(self, x: torch.Tensor) -> torch.Tensor:  # [B, M, F*S] -> [B, M*S, F]
        b, m, t = x.shape
        s = self.cfg.stack
        return x.view(b, m, t // s, s).permute(0, 1, 3, 2).reshape(b, m * s, t // s)

    def _unstack(self, x: torch.Tensor) -> torch.Tensor:  # [B, M*S, F] -> [B, M, F*S]
        b, _, f = x.shape
        s, m = self.cfg.stack, self.cfg.mel.n_mels
        return x.view(b, m, s, f).permute(0, 1, 3, 2).reshape(b, m, f * s)

    def _enc(self, x: torch.Tensor) -> torch.Tensor:  # [B, M*S, F] -> [B, F, D]
        if self.cfg.arch == "linear":
            return self.proj_in(x.transpose(1, 2))
        return self.proj_in(x).transpose(1, 2)

    def _dec(self, z: torch.Tensor) -> torch.Tensor:  # [B, F, D] -> [B, M*S, F]
        if self.cfg.arch == "linear":
            return self.proj_out(z).transpose(1, 2)
        return self.proj_out(z.transpose(1, 2))

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Quantised latent [B, F, D] -> standardised mel [B, M, F * stack] (with gradients: training uses it)."""
        return self._unstack(self._dec(z))

    def forward(self, mel: torch.Tensor) -> CodecOutput:
        """Training forward on log-mel [B, M, T]."""
        self._check_mel(mel)
        target = self.normalize(self.pad_to_stack(mel))
        n_q = None
        if self.training and self.cfg.quantizer_dropout > 0 and torch.rand(()) < self.cfg.quantizer_dropout:
            n_q = int(torch.randint(1, self.cfg.n_codebooks + 1, ()))
        q = self.rvq(self._enc(self._stack(target)), n_codebooks=n_q)
        return CodecOutput(recon=self.decode_latent(q.quantized), target=target, rvq=q)

    def _check_mel(self, mel: torch.Tensor) -> None:
        if mel.dim() != 3 or mel.shape[1] != self.cfg.mel.n_mels:
            raise AudioError(f"expected log-mel [B, {self.cfg.mel.n_mels}, T], got {tuple(mel.shape)}")
        if mel.shape[-1] == 0:
            raise AudioError("empty mel (0 frames)")
        if not torch.isfinite(mel).all():
            raise AudioError("mel holds NaN or Inf")

    @torch.no_grad()
    def encode_latent(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, M, T] -> the encoder's latent [B, ceil(T / stack), D], before quantisation (what
        `decode_latent` would make of it is the autoencoder alone: benchmarks/codec_bottleneck.py)."""
        self._check_mel(mel)
        return self._enc(self._stack(self.normalize(self.pad_to_stack(mel))))

    @torch.no_grad()
    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, M, T] -> codes [B, K, ceil(T / stack)]."""
        z = self.encode_latent(mel)
        was = self.rvq.training
        self.rvq.eval()
        codes = self.rvq(z).codes
        self.rvq.train(was)
        return codes

    @torch.no_grad()
    def decode_mel(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, F] -> log-mel [B, M, F * stack]."""
        codes = check_codes(codes, self.cfg.n_codebooks, self.cfg.codebook_size)
        return self.denormalize(self.decode_latent(self.rvq.decode(codes)))

    @torch.no_grad()
    def decode_mel_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, K, F, N] (each frame's distribution over every codebook's entries) -> log-mel
        [B, M, F * stack], decoded from the expected latent (`ResidualVQ.decode_soft`) instead of one
        drawn code per codebook: a model that predicts codebooks independently (the TRM) need not pick
        residual codes that fit its codebook-0 code. One-hot probs give `decode_mel` of those codes."""
        if probs.dim() != 4 or probs.shape[1:2] != (self.cfg.n_codebooks,) \
                or probs.shape[-1] != self.cfg.codebook_size:
            raise ConfigError(f"expected probs [B, {self.cfg.n_codebooks}, F, {self.cfg.codebook_size}], "
                              f"got {tuple(probs.shape)}")
        if probs.shape[2] == 0:
            raise ConfigError("probs hold no frames")
        if not torch.isfinite(probs).all():
            raise ConfigError("probs hold NaN or Inf")
        return self.denormalize(self.decode_latent(self.rvq.decode_soft(probs.to(self.mel_mean.device))))

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, T] at `sample_rate` -> codes [B, K, F]."""
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.shape[-1] == 0:
            raise AudioError("cannot encode empty audio")
        if not torch.isfinite(wav).all():
            raise AudioError("audio holds NaN or Inf")
        return self.encode_mel(self.melspec(wav.to(self.mel_mean.device)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if self.vocoder is None:
            raise ConfigError("this mel codec has no vocoder attached: set codec.vocoder (e.g. Griffin-Lim)")
        return self.vocoder(self.decode_mel(codes))

    def spec(self, path: str | None = None) -> dict:
        return {"type": "mel_rvq", "path": path, "config": self.cfg.to_dict()}

    # parts -----------------------------------------------------------------------------------
    def state_dict(self, *args, **kwargs):
        """The codec's own weights and mel statistics: an attached vocoder is not part of the part."""
        sd = super().state_dict(*args, **kwargs)
        return {k: v for k, v in sd.items() if not k.startswith("vocoder.")}

    def num_params(self) -> int:
        """Parameters as the seed counts them: projections + codebooks (mel statistics are buffers)."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("vocoder."))

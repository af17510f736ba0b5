"""Vocos-style vocoder (Siuzdak 2023): a ConvNeXt backbone on log-mel frames predicts the STFT
magnitude and phase of each frame, and one inverse STFT (`torch.istft`) makes the waveform.

No upsampling stack: every layer runs at the mel frame rate (86 Hz for the vocoder-grade mel), so
it is far cheaper per second of audio than HiFi-GAN, which runs its convolutions at up to 22 kHz.

    mel [B, M, F] -> Conv1d(M, dim, 7) -> LayerNorm -> n_layers x ConvNeXt block
      (depthwise Conv1d(k) -> LayerNorm -> Linear(dim, intermediate) -> GELU -> Linear -> layer scale, residual)
      -> LayerNorm -> Linear(dim, n_fft + 2) -> log|S| (exp, capped at 100) and phase p
      -> S = |S| e^{ip} [B, n_fft/2 + 1, F] -> torch.istft(hop, Hann, center) -> wav [B, F * hop]

Output frame f is centred on sample f * hop; the mel frontend's frame f is centred half a hop later.
The network sees the whole neighbourhood of frames and its loss is on the waveform, so it absorbs
that constant offset (its output is aligned with the audio it was trained to reproduce).

A released Vocos is a part directory (model_type "vocos") whose config holds the `MelConfig` it was
trained on and, when it was trained on a codec's decoded mels, that codec's identity
(`codec`: config + a fingerprint of its codebooks). A spec or a codec that disagrees is a
ConfigError at load, never noise.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codectts.audio.mel import MelConfig, mel_preset
from codectts.errors import ConfigError
from codectts.parts import PartConfig, PartModel, from_dict, make_preset
from codectts.vocoders.base import check_mel, load_trained_vocoder

MAX_LOG_MAG = 4.6  # exp(4.6) = 100: Vocos caps the magnitude so an early spike cannot blow up the iSTFT
LAYER_SCALE_INIT = 1e-2  # a smaller init than Vocos' 1 / n_layers: near-identity blocks, stable from step 0
EMBED_KERNEL = 7


@dataclass
class VocosConfig(PartConfig):
    mel: MelConfig = field(default_factory=lambda: mel_preset("vocoder"))
    dim: int = 256
    intermediate: int = 768
    n_layers: int = 8
    kernel: int = 7
    n_fft: int | None = None  # of the output STFT (default 4 mel hops); its hop is the mel hop
    codec: dict | None = None  # {"config": ..., "fingerprint": ...} of the codec whose decoded mels it learned

    def __post_init__(self):
        if isinstance(self.mel, dict):
            self.mel = from_dict(MelConfig, self.mel, "vocos config 'mel'")
        if self.n_fft is None:
            self.n_fft = 4 * self.mel.hop_length
        if self.kernel % 2 == 0 or self.kernel < 1:
            raise ConfigError(f"vocos: kernel must be odd, got {self.kernel}")
        if min(self.dim, self.intermediate, self.n_layers) < 1:
            raise ConfigError("vocos: dim, intermediate and n_layers must be positive")
        hop = self.mel.hop_length
        if self.n_fft < 2 * hop or self.n_fft % hop or self.n_fft % 2:
            raise ConfigError(f"vocos: n_fft {self.n_fft} must be an even multiple of the mel hop {hop}, at least "
                              "2 hops (overlapping Hann windows)")

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length

    @property
    def context_frames(self) -> int:
        """Mel frames on each side that one output frame's samples depend on (embed, blocks, iSTFT overlap)."""
        istft = self.n_fft // (2 * self.hop_length)
        return EMBED_KERNEL // 2 + self.n_layers * (self.kernel // 2) + istft + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mel"] = self.mel.to_dict()
        return d


# Named shapes for the "vocoder" mel unless `mel=` is overridden.
PRESETS: dict[str, dict] = {
    # Half of Vocos' published width (512/1536): 4.5 M parameters, trainable on one GPU in hours.
    "base": dict(dim=256, intermediate=768, n_layers=8),
    # For CPU training runs: 0.8 M parameters.
    "small": dict(dim=128, intermediate=384, n_layers=6),
    # Test-sized.
    "tiny": dict(dim=16, intermediate=32, n_layers=2),
}


def preset(name: str, **overrides) -> VocosConfig:
    """A named shape; `mel=` (default: the "vocoder" mel preset), `codec=` and other overrides replace fields."""
    return make_preset(VocosConfig, PRESETS, name, overrides)


def codec_identity(codec) -> dict:
    """What a vocoder trained on `codec`'s decoded mels records: its config and a fingerprint of its
    codebooks (rounded to fp16, so a codec re-saved in half precision keeps its identity)."""
    books = codec.rvq.codebooks.detach().cpu().half().contiguous()
    digest = hashlib.sha256(books.view(torch.int16).numpy().tobytes()).hexdigest()[:16]
    return {"config": codec.cfg.to_dict(), "fingerprint": digest}


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int, kernel: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, F]
        y = self.dwconv(x).transpose(1, 2)
        y = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(y))))
        return x + y.transpose(1, 2)


class VocosGenerator(nn.Module):
    """log-mel [B, M, F] -> wav [B, 1, F * hop] (the trainable network; `Vocos` wraps it as a Vocoder)."""

    def __init__(self, cfg: VocosConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Conv1d(cfg.mel.n_mels, cfg.dim, EMBED_KERNEL, padding=EMBED_KERNEL // 2)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.intermediate, cfg.kernel) for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.n_fft + 2)
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """Complex STFT [B, n_fft/2 + 1, F] predicted from log-mel [B, M, F]."""
        x = self.norm_in(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.head(self.norm_out(x.transpose(1, 2))).transpose(1, 2).float()  # [B, n_fft + 2, F]
        log_mag, phase = h.chunk(2, dim=1)
        mag = torch.exp(log_mag.clamp(max=MAX_LOG_MAG))
        return torch.polar(mag, phase)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        n = mel.shape[-1]
        spec = self.spectrum(mel)
        wav = torch.istft(spec, self.cfg.n_fft, self.cfg.hop_length, self.cfg.n_fft, self.window.to(spec.real.dtype),
                          center=True, length=n * self.cfg.hop_length)
        return wav.unsqueeze(1)


class Vocos(PartModel, nn.Module):
    """The `Vocoder` around a VocosGenerator: validated input, part save/load, spec for voice.json."""

    model_type = "vocos"
    config_class = VocosConfig
    accepts_prefix = False

    def __init__(self, cfg: VocosConfig, source: Path | None = None):
        super().__init__()
        self.cfg = cfg
        self.mel = cfg.mel
        self.sample_rate = cfg.mel.sample_rate
        self.codec = cfg.codec
        self.context_frames = cfg.context_frames
        self.generator = VocosGenerator(cfg)
        self.source = Path(source) if source is not None else None

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        mel = check_mel(mel, self.mel, "vocos").to(self.generator.window.device)
        return self.generator(mel).squeeze(1)

    def check_codec(self, codec, what: str = "vocos") -> None:
        """Refuse a codec other than the one whose decoded mels this vocoder was trained on (if any)."""
        if self.codec is None or codec is None or not hasattr(codec, "rvq"):
            return
        ident = codec_identity(codec)
        if ident != self.codec:
            raise ConfigError(f"{what}: this vocoder was trained on the decoded mels of codec "
                              f"{self.codec.get('fingerprint')} ({_codec_label(self.codec)}), not on codec "
                              f"{ident['fingerprint']} ({_codec_label(ident)})")

    def part_module(self) -> nn.Module:
        return self.generator

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Vocos:
        """The part at `path`; it remembers where it came from, so `spec()` can point at it."""
        return super().load(path, device, source=Path(path))

    def save(self, path: str | Path, *, half: bool = False, extra: dict | None = None,
             files: dict[str, bytes] | None = None) -> Path:
        self.source = super().save(path, half=half, extra=extra, files=files)
        return self.source

    def spec(self, root: str | Path | None = None) -> dict:
        if self.source is None:
            raise ConfigError("vocos: save or load this vocoder from a part directory before asking for its spec")
        path = self.source.resolve()
        if root is not None:
            try:
                path = path.relative_to(Path(root).resolve())
            except ValueError:
                pass
        return {"type": self.model_type, "path": str(path), "mel": self.mel.to_dict()}

    @classmethod
    def from_spec(cls, spec: dict, root: str | Path | None = None, device: str | torch.device = "cpu") -> Vocos:
        return load_trained_vocoder(cls, spec, root, device)


def _codec_label(ident: dict) -> str:
    c = ident.get("config", {})
    return f"{c.get('n_codebooks')}x{c.get('codebook_size')}, stack {c.get('stack')}"

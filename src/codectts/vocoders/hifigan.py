"""HiFi-GAN generator (Kong, Kim & Bae 2020) and the `HiFiGAN` vocoder that serves it.

Generator: conv_pre (7) -> per stage [LeakyReLU, ConvTranspose1d(rate u, kernel k), multi-receptive-
field fusion = mean of residual blocks with kernels K and dilations D] -> LeakyReLU -> conv_post (7)
-> tanh. The rates' product must equal the mel hop, so F frames give exactly F * hop samples.
Weight norm is used for training and folded into plain weights for release and inference.

A released vocoder is a part directory (`codectts.parts`): config.json with model_type "hifigan"
and the full `HiFiGANConfig` (including the mel config it was trained on) + model.safetensors.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from codectts.audio.mel import MelConfig, mel_preset
from codectts.errors import ConfigError
from codectts.parts import PartConfig, PartModel, from_dict, make_preset
from codectts.vocoders.base import check_mel, load_trained_vocoder

LRELU_SLOPE = 0.1
POST_LRELU_SLOPE = 0.01  # the reference implementation's default slope before conv_post
PRE_KERNEL = 7
POST_KERNEL = 7
INIT_STD = 0.01


@dataclass
class HiFiGANConfig(PartConfig):
    """One generator's shape. `mel` is the frontend it consumes; derived sizes are properties."""

    mel: MelConfig = field(default_factory=lambda: mel_preset("vocoder"))
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 256
    resblock: str = "2"  # "1": two convs per dilation (V1); "2": one conv per dilation (V3, the seed)
    resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 2), (1, 2), (1, 2))

    def __post_init__(self):
        if isinstance(self.mel, dict):
            self.mel = from_dict(MelConfig, self.mel, "hifigan config 'mel'")
        self.upsample_rates = tuple(int(r) for r in self.upsample_rates)
        self.upsample_kernel_sizes = tuple(int(k) for k in self.upsample_kernel_sizes)
        self.resblock_kernel_sizes = tuple(int(k) for k in self.resblock_kernel_sizes)
        self.resblock_dilation_sizes = tuple(tuple(int(d) for d in ds) for ds in self.resblock_dilation_sizes)
        if math.prod(self.upsample_rates) != self.mel.hop_length:
            raise ConfigError(f"hifigan: upsample_rates {list(self.upsample_rates)} multiply to "
                              f"{math.prod(self.upsample_rates)}, but the mel hop is {self.mel.hop_length}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError("hifigan: upsample_rates and upsample_kernel_sizes differ in length")
        for u, k in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=False):
            if u < 1 or k < u or (k - u) % 2:
                raise ConfigError(f"hifigan: upsample kernel {k} for rate {u} must be >= the rate and differ "
                                  "from it by an even number (so each stage multiplies the length exactly)")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes) or not self.resblock_kernel_sizes:
            raise ConfigError("hifigan: need one dilation list per resblock kernel")
        if any(k % 2 == 0 for k in self.resblock_kernel_sizes):
            raise ConfigError(f"hifigan: resblock kernels must be odd, got {list(self.resblock_kernel_sizes)}")
        if self.resblock not in ("1", "2"):
            raise ConfigError(f"hifigan: resblock must be '1' or '2', got {self.resblock!r}")
        if self.upsample_initial_channel % (2 ** len(self.upsample_rates)):
            raise ConfigError(f"hifigan: upsample_initial_channel {self.upsample_initial_channel} must be "
                              f"divisible by 2**{len(self.upsample_rates)} (channels halve each stage)")

    @property
    def n_mels(self) -> int:
        return self.mel.n_mels

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mel"] = self.mel.to_dict()
        return d


# Named shapes, all for the "vocoder" mel (22.05 kHz, hop 256) unless `mel` and the rates are overridden.
PRESETS: dict[str, dict] = {
    # Seeds 001/002: upsample [8,8,2,2] / kernels [16,16,4,4], MRF kernels [3,5,7], dilations [1,2] each.
    # The seed gives no width: 256 channels is our choice (V3's).
    "seed": dict(upsample_rates=(8, 8, 2, 2), upsample_kernel_sizes=(16, 16, 4, 4), upsample_initial_channel=256,
                 resblock="2", resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2),) * 3),
    # HiFi-GAN V1 (the paper's best quality; ~14 M parameters, slow on CPU).
    "v1": dict(upsample_rates=(8, 8, 2, 2), upsample_kernel_sizes=(16, 16, 4, 4), upsample_initial_channel=512,
               resblock="1", resblock_kernel_sizes=(3, 7, 11), resblock_dilation_sizes=((1, 3, 5),) * 3),
    # HiFi-GAN V3 (fast; ~1.5 M parameters).
    "v3": dict(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=256,
               resblock="2", resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12))),
    # V3 shape at half width: what a 2-core CPU can train in tens of minutes and run far faster than real time.
    "small": dict(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=128,
                  resblock="2", resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12))),
    # Test-sized: seconds on CPU.
    "tiny": dict(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=32,
                 resblock="2", resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 2), (1, 2))),
}


def preset(name: str, **overrides) -> HiFiGANConfig:
    """A named shape; `mel=` (default: the "vocoder" mel preset) and other overrides replace fields."""
    return make_preset(HiFiGANConfig, PRESETS, name, overrides)


def _pad(kernel: int, dilation: int = 1) -> int:
    return dilation * (kernel - 1) // 2


def _conv(cin: int, cout: int, kernel: int, dilation: int = 1, use_wn: bool = True) -> nn.Module:
    conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=_pad(kernel, dilation))
    nn.init.normal_(conv.weight, 0.0, INIT_STD)
    return weight_norm(conv) if use_wn else conv


class ResBlock1(nn.Module):
    """Per dilation d: x += conv_1(lrelu(conv_d(lrelu(x))))  (HiFi-GAN V1/V2)."""

    def __init__(self, ch: int, kernel: int, dilations: tuple[int, ...], use_wn: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(ch, ch, kernel, d, use_wn) for d in dilations)
        self.convs2 = nn.ModuleList(_conv(ch, ch, kernel, 1, use_wn) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=False):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Per dilation d: x += conv_d(lrelu(x))  (HiFi-GAN V3, the seed's [1, 2] dilations)."""

    def __init__(self, ch: int, kernel: int, dilations: tuple[int, ...], use_wn: bool):
        super().__init__()
        self.convs = nn.ModuleList(_conv(ch, ch, kernel, d, use_wn) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = x + c(F.leaky_relu(x, LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """log-mel [B, n_mels, F] -> wav [B, 1, F * hop] in [-1, 1]."""

    def __init__(self, cfg: HiFiGANConfig, use_weight_norm: bool = True):
        super().__init__()
        self.cfg = cfg
        ch = cfg.upsample_initial_channel
        wn = weight_norm if use_weight_norm else (lambda m: m)
        self.conv_pre = wn(nn.Conv1d(cfg.n_mels, ch, PRE_KERNEL, padding=_pad(PRE_KERNEL)))
        block = ResBlock1 if cfg.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=False)):
            cin, cout = ch // 2 ** i, ch // 2 ** (i + 1)
            up = nn.ConvTranspose1d(cin, cout, k, u, padding=(k - u) // 2)
            nn.init.normal_(up.weight, 0.0, INIT_STD)
            self.ups.append(wn(up))
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=False):
                self.resblocks.append(block(cout, rk, rd, use_weight_norm))
        last = ch // 2 ** len(cfg.upsample_rates)
        post = nn.Conv1d(last, 1, POST_KERNEL, padding=_pad(POST_KERNEL))
        nn.init.normal_(post.weight, 0.0, INIT_STD)
        self.conv_post = wn(post)
        self.n_kernels = len(cfg.resblock_kernel_sizes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)  # [B, C, F]
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))  # [B, C / 2^(i+1), F * prod(rates[:i+1])]
            blocks = self.resblocks[i * self.n_kernels:(i + 1) * self.n_kernels]
            x = sum(b(x) for b in blocks) / self.n_kernels  # multi-receptive-field fusion
        x = self.conv_post(F.leaky_relu(x, POST_LRELU_SLOPE))
        return torch.tanh(x)  # [B, 1, T]


def plain_state_dict(gen: Generator) -> dict[str, torch.Tensor]:
    """State dict with weight norm folded in, leaving `gen` untouched (it may still be training).

    (Not deepcopy + remove: parametrised modules share a generated class, and removing the
    parametrisation from the copy would break the original.)
    """
    plain = Generator(gen.cfg, use_weight_norm=False)
    mods = dict(gen.named_modules())
    with torch.no_grad():
        for name, m in plain.named_modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                src = mods[name]
                m.weight.copy_(src.weight)  # the parametrised weight g * v / |v|
                m.bias.copy_(src.bias)
    return plain.state_dict()


def receptive_field_frames(cfg: HiFiGANConfig) -> int:
    """Mel frames on each side that can influence an output sample (a safe upper bound).

    Streaming with this much context on both sides reproduces the full-utterance output exactly.
    """
    radius = _pad(PRE_KERNEL)  # in frames
    rate = 1
    for u, k in zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=False):
        radius += math.ceil(k / u) / rate  # transposed conv: input units at the current rate
        rate *= u
        per_block = []
        for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=False):
            r = sum(_pad(rk, d) for d in rd)
            if cfg.resblock == "1":
                r += len(rd) * _pad(rk)
            per_block.append(r)
        radius += max(per_block) / rate
    radius += _pad(POST_KERNEL) / rate
    return math.ceil(radius) + 1


class HiFiGAN(PartModel, nn.Module):
    """The `Vocoder` for a trained generator: log-mel [B, n_mels, F] -> wav [B, F * hop].
    Its part holds the generator's plain (weight-norm folded) weights."""

    model_type = "hifigan"
    config_class = HiFiGANConfig

    def __init__(self, cfg: HiFiGANConfig, source: Path | None = None):
        super().__init__()
        self.cfg = cfg
        self.mel = cfg.mel
        self.sample_rate = cfg.mel.sample_rate
        self.generator = Generator(cfg, use_weight_norm=False)
        self.source = source
        self.context_frames = receptive_field_frames(cfg)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        param = next(self.generator.parameters())
        mel = check_mel(mel, self.mel, "hifigan").to(device=param.device, dtype=param.dtype)
        return self.generator(mel).squeeze(1).float()

    # ---- parts and specs -------------------------------------------------------------------
    def part_module(self) -> nn.Module:
        return self.generator

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> HiFiGAN:
        """The part at `path`; it remembers where it came from, so `spec()` can point at it."""
        return super().load(path, device, source=Path(path))

    def spec(self, root: str | Path | None = None) -> dict:
        """{"type": "hifigan", "path": ..., "mel": ...}; the path is made relative to `root` when given."""
        if self.source is None:
            raise ConfigError("hifigan: this vocoder was not loaded from or saved to a part directory; "
                              "save it first so a spec can point at its weights")
        path = Path(self.source)
        if root is not None:
            try:
                path = path.resolve().relative_to(Path(root).resolve())
            except ValueError:
                path = path.resolve()
        return {"type": "hifigan", "path": str(path), "mel": self.mel.to_dict()}

    @classmethod
    def from_spec(cls, spec: dict, root: str | Path | None = None,
                  device: str | torch.device = "cpu") -> HiFiGAN:
        return load_trained_vocoder(cls, spec, root, device)

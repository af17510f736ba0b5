"""The `Vocoder` contract: log-mel [B, n_mels, F] -> wav [B, F * hop], carrying the mel config it expects.

A voice stores `vocoder.spec()` (plain JSON) in its voice.json; `load_vocoder(spec, root)` rebuilds
the same vocoder. Every vocoder validates its input with `check_mel`, so a mel made with other
settings (e.g. 128 bins fed to an 80-bin vocoder) is a ConfigError, not noise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from codectts.audio.mel import MelConfig
from codectts.errors import AudioError, ConfigError

SPEC_TYPE_KEY = "type"


@runtime_checkable
class Vocoder(Protocol):
    """Anything that turns natural-log mels into waveforms at `mel.sample_rate`."""

    mel: MelConfig
    sample_rate: int

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, n_mels, F] (or [n_mels, F]) -> wav [B, F * mel.hop_length] float32."""
        ...

    def spec(self) -> dict:
        """JSON-able description that `load_vocoder` turns back into this vocoder."""
        ...


def check_mel(mel: torch.Tensor, cfg: MelConfig, what: str = "vocoder") -> torch.Tensor:
    """Validate a log-mel for a vocoder expecting `cfg`; returns it as float [B, n_mels, F].

    Wrong bin count -> ConfigError (the features come from another frontend); empty or
    non-finite -> AudioError (the upstream model failed).
    """
    if not torch.is_tensor(mel):
        raise AudioError(f"{what}: expected a torch.Tensor log-mel, got {type(mel).__name__}")
    if mel.dim() == 2:
        mel = mel.unsqueeze(0)
    if mel.dim() != 3:
        raise AudioError(f"{what}: expected log-mel [B, n_mels, F], got shape {tuple(mel.shape)}")
    if mel.shape[1] != cfg.n_mels:
        raise ConfigError(f"{what}: expects {cfg.n_mels} mel bins (mel config {cfg.to_dict()}), "
                          f"got {mel.shape[1]} (shape {tuple(mel.shape)})")
    if mel.shape[0] == 0 or mel.shape[2] == 0:
        raise AudioError(f"{what}: empty mel (shape {tuple(mel.shape)})")
    if not mel.is_floating_point():
        mel = mel.float()
    if not torch.isfinite(mel).all():
        raise AudioError(f"{what}: mel holds NaN or Inf values")
    return mel


def load_vocoder(spec: dict, root: str | Path | None = None, device: str | torch.device = "cpu") -> Vocoder:
    """Inverse of `Vocoder.spec()`.

    `{"type": "griffinlim", "mel": {...}, "n_iter": 32, ...}` needs no files;
    `{"type": "hifigan", "path": "vocoders/hifigan-small"}` loads a release part whose path is
    relative to `root` (the voice directory) unless absolute. When the spec also names a `mel`
    config, it must match the one the part was trained with.
    """
    if not isinstance(spec, dict) or SPEC_TYPE_KEY not in spec:
        raise ConfigError(f"vocoder spec must be a dict with a {SPEC_TYPE_KEY!r} key, got {spec!r}")
    kind = spec[SPEC_TYPE_KEY]
    if kind == "griffinlim":
        from codectts.vocoders.griffinlim import GriffinLim

        return GriffinLim.from_spec(spec).to(device)
    if kind == "hifigan":
        from codectts.vocoders.hifigan import HiFiGAN

        return HiFiGAN.from_spec(spec, root=root, device=device)
    if kind == "vocos":
        from codectts.vocoders.vocos import Vocos

        return Vocos.from_spec(spec, root=root, device=device)
    raise ConfigError(f"unknown vocoder type {kind!r} (known: griffinlim, hifigan, vocos)")


def load_vocoder_part(path: str | Path, mel: MelConfig | None = None, device: str | torch.device = "cpu") -> Vocoder:
    """A trained vocoder part folder (HiFi-GAN or Vocos: its config.json says which). With `mel`, a part
    trained for other mels is refused at load."""
    from codectts.parts import read_part_config

    spec = {SPEC_TYPE_KEY: read_part_config(path).get("model_type"), "path": str(Path(path).resolve())}
    if mel is not None:
        spec["mel"] = mel.to_dict()
    return load_vocoder(spec, device=device)


def check_vocoder_codec(vocoder, codec, what: str) -> None:
    """A vocoder trained on one codec's decoded mels (Vocos records it) refuses any other codec."""
    check = getattr(vocoder, "check_codec", None)
    if check is not None:
        check(codec, what)


def shipped_vocoder_dirs() -> list[Path]:
    """Trained vocoder parts shipped inside the package (codectts/voices/vocoders/<name>/)."""
    folder = Path(__file__).resolve().parent.parent / "voices" / "vocoders"
    return sorted(p for p in folder.glob("*") if (p / "config.json").is_file()) if folder.is_dir() else []


def default_vocoder(mel: MelConfig, device: str | torch.device = "cpu") -> Vocoder:
    """The best vocoder available for `mel`: a shipped trained HiFi-GAN for exactly that mel config
    (it ships only where it measured better than Griffin-Lim, see docs/vocoders.md), else Griffin-Lim."""
    from codectts.parts import read_part_config

    for path in shipped_vocoder_dirs():
        meta = read_part_config(path)
        if meta.get("model_type") == "hifigan" and meta.get("config", {}).get("mel") == mel.to_dict():
            return load_vocoder({"type": "hifigan", "path": str(path)}, device=device)
    from codectts.vocoders.griffinlim import GriffinLim

    return GriffinLim(mel).to(device)


def load_trained_vocoder(cls, spec: dict, root: str | Path | None, device: str | torch.device):
    """A trained vocoder part (HiFi-GAN, Vocos) from its spec: `path` relative to `root` unless absolute,
    and the spec's `mel`, when it names one, must match the mel the part was trained with."""
    kind = cls.model_type
    if "path" not in spec:
        raise ConfigError(f"{kind} spec lacks 'path': {spec}")
    path = Path(spec["path"])
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    voc = cls.load(path, device=device)
    if "mel" in spec:
        mel_from_spec(spec, str(path)).check_compatible(voc.mel, f"{kind} {path} (voice spec vs trained)")
    return voc


def mel_from_spec(spec: dict, where: str) -> MelConfig:
    try:
        return MelConfig.from_dict(spec["mel"])
    except KeyError:
        raise ConfigError(f"{where}: vocoder spec lacks 'mel'") from None
    except TypeError as e:
        raise ConfigError(f"{where}: bad mel config in vocoder spec ({e})") from None

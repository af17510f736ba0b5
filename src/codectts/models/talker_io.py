"""Save/load Talker and duration-model parts (config.json + model.safetensors)."""
from __future__ import annotations

from pathlib import Path

from codectts.models.duration import DurationConfig, DurationModel
from codectts.models.talker import Talker, TalkerConfig
from codectts.parts import load_part, load_state_strict, save_part


def save_talker(path: Path, model: Talker, half: bool = False) -> Path:
    return save_part(path, model.state_dict(), model.cfg.to_dict(), "talker", half=half)


def load_talker(path: Path, device: str = "cpu") -> Talker:
    sd, meta = load_part(path, "talker")
    model = Talker(TalkerConfig(**meta["config"]))
    load_state_strict(model, sd, str(path))
    return model.to(device).eval()


def save_duration(path: Path, model: DurationModel, half: bool = False) -> Path:
    return save_part(path, model.state_dict(), model.cfg.to_dict(), "duration", half=half)


def load_duration(path: Path, device: str = "cpu") -> DurationModel:
    sd, meta = load_part(path, "duration")
    model = DurationModel(DurationConfig(**meta["config"]))
    load_state_strict(model, sd, str(path))
    return model.to(device).eval()

"""Save/load Talker and duration-model parts (config.json + model.safetensors)."""
from __future__ import annotations

from pathlib import Path

from codectts.models.duration import DurationConfig, DurationModel
from codectts.models.talker import Talker, TalkerConfig
from codectts.parts import load_model, save_part


def save_talker(path: Path, model: Talker, half: bool = False) -> Path:
    return save_part(path, model.state_dict(), model.cfg.to_dict(), "talker", half=half)


def load_talker(path: Path, device: str = "cpu") -> Talker:
    return load_model(path, "talker", lambda c: Talker(TalkerConfig(**c)), device)[0]


def save_duration(path: Path, model: DurationModel, half: bool = False) -> Path:
    return save_part(path, model.state_dict(), model.cfg.to_dict(), "duration", half=half)


def load_duration(path: Path, device: str = "cpu") -> DurationModel:
    return load_model(path, "duration", lambda c: DurationModel(DurationConfig(**c)), device)[0]

"""A released part is a directory: `config.json` (model_type, format_version, config) + `model.safetensors`.

Written atomically (a temp directory renamed into place), loaded without unpickling anything.
Shared by training (export) and inference (load), so neither imports the other.

Every model family follows one convention, defined here:

- its config is a dataclass deriving from `PartConfig`: `to_dict()`, and `from_dict(d)` that rejects
  unknown fields with a ConfigError naming them (never a TypeError traceback);
- its module has `PRESETS` (name -> field values) and `preset(name, **overrides)` built by `make_preset`;
- its model derives from `PartModel`: `model.save(dir)` and `Model.load(dir, device)`, strict loading.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file

from codectts.errors import CheckpointError, ConfigError
from codectts.fileio import fsync_dir, fsync_tree
from codectts.schema import check_fields
from codectts.schema import from_dict as _schema_from_dict

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"

C = TypeVar("C")
M = TypeVar("M", bound="PartModel")


def from_dict(cls: type[C], d: Mapping[str, Any], where: str | None = None) -> C:
    """Build the dataclass `cls` from JSON-like `d` (`codectts.schema.from_dict`): unknown or missing fields,
    values of the wrong type and values its `__post_init__` refuses are a ConfigError naming `where`
    (default: the class name) and the field, never a TypeError traceback."""
    return _schema_from_dict(cls, d, where or cls.__name__)


class PartConfig:
    """Base of every model config (subclasses are dataclasses): strict `from_dict`, plain `to_dict`."""

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any], where: str | None = None) -> C:
        return from_dict(cls, d, where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def make_preset(cls: type[C], presets: Mapping[str, Mapping[str, Any]], name: str,
                overrides: Mapping[str, Any]) -> C:
    """`cls` with the fields of preset `name`, then `overrides` (e.g. the sizes a corpus decides)."""
    if name not in presets:
        raise ConfigError(f"unknown {cls.__name__} preset {name!r}; choose from {sorted(presets)}")
    return from_dict(cls, {**copy.deepcopy(dict(presets[name])), **overrides}, f"preset {name!r}")


def config_to_dict(cfg: Any) -> dict:
    if isinstance(cfg, PartConfig):
        return cfg.to_dict()
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp directory onto `final`, never leaving a half-written `final` behind: its files are
    flushed to disk before the rename, and the rename is flushed after. A crash between the two renames
    leaves `.NAME.old-PID` (see codectts.fileio.recover_stale)."""
    final = Path(final)
    for p in [tmp, *Path(tmp).rglob("*")]:  # mkdtemp makes 0700 folders; releases must be readable
        if p.is_dir():
            os.chmod(p, 0o755)
    fsync_tree(tmp)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def half_floats(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors as fp16, the rest as they are: how shipped parts are stored (loading casts back)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}


def save_part(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], config: Any, model_type: str,
              extra: dict | None = None, half: bool = False, files: dict[str, bytes] | None = None) -> Path:
    """Write weights + config (and optional extra files) as one directory, atomically."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-{os.getpid()}-"))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(half_floats(tensors) if half else tensors, str(tmp / WEIGHTS))
        meta = {"model_type": model_type, "format_version": FORMAT_VERSION, "config": config_to_dict(config),
                **(extra or {})}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
        for name, data in (files or {}).items():  # names may hold folders ("sub/part/file")
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_part_config(path: str | os.PathLike, model_type: str | None = None) -> dict:
    path = Path(path)
    cfg_file = path / CONFIG
    if not cfg_file.exists():
        raise CheckpointError(f"{path}: not a model directory (no {CONFIG})")
    try:
        meta = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{cfg_file}: unreadable ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise ConfigError(f"{cfg_file}: must be an object with a 'config' object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_file}: format_version {meta.get('format_version')!r} unsupported "
                              f"(this codectts reads {FORMAT_VERSION})")
    if model_type is not None and meta.get("model_type") != model_type:
        raise CheckpointError(f"{path}: holds a {meta.get('model_type')!r}, expected a {model_type!r}")
    return meta


def load_part(path: str | os.PathLike, model_type: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict in float32, meta dict with 'config')."""
    meta = read_part_config(path, model_type)
    weights = Path(path) / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{path}: missing {WEIGHTS}")
    try:
        sd = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights}: corrupt weights ({e})") from None
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:  # a diverged or damaged part would otherwise load silently and speak noise or NaN
        raise CheckpointError(f"{weights}: {len(bad)} tensor(s) hold NaN or Inf (e.g. {bad[0]!r})")
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, meta


def load_state_strict(model: torch.nn.Module, sd: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a CheckpointError that names the mismatch instead of a long RuntimeError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [k for k in own if k in sd and own[k].shape != sd[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{where}: weights do not match the config (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}, wrong shape {shapes[:3]})")
    model.load_state_dict(sd)


class PartModel:
    """Mixin for an nn.Module released as a part: `model.save(dir)` / `Model.load(dir, device)`.

    A subclass sets `model_type` (stored in config.json) and `config_class` (a PartConfig) and keeps
    its config in `self.cfg`; `part_module()` names the module whose weights are the part (default:
    the model itself). `Model.load` builds `Model(cfg, **kwargs)` and loads the weights strictly.
    Extra JSON a part carries (tokenizer, speakers, ...) is read with `read_part_config`.
    """

    model_type: ClassVar[str]
    config_class: ClassVar[type[PartConfig]]
    cfg: Any

    def part_module(self) -> torch.nn.Module:
        return self  # type: ignore[return-value]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.part_module().parameters())

    def save(self, path: str | os.PathLike, *, half: bool = False, extra: dict | None = None,
             files: dict[str, bytes] | None = None) -> Path:
        """Write this model as a part (`half`: floating weights as fp16; `extra`: more config.json keys;
        `files`: more files inside the folder)."""
        return save_part(path, self.part_module().state_dict(), self.cfg, self.model_type, extra=extra, half=half,
                         files=files)

    def init_from(self, path: str | os.PathLike, ignore: tuple[str, ...] = ("dropout", "prev_frame_dropout"),
                  adaptable: tuple[str, ...] = ()) -> None:
        """Copy the weights of the trained part at `path` into this model (fine-tuning): its config must equal
        this model's but for regularisation (`ignore`), which may change when fine-tuning, and `adaptable`
        fields (e.g. the speaker conditioning of a single-speaker model that becomes a cloning one): when those
        differ, every weight of the same name and shape is copied and the rest start from initialisation."""
        src = type(self).load(path)
        have, want = config_to_dict(src.cfg), config_to_dict(self.cfg)
        diff = {k: (v, want.get(k)) for k, v in have.items() if k not in ignore and want.get(k) != v}
        if set(diff) - set(adaptable):
            raise CheckpointError(f"--init-from {path}: its {self.model_type} differs from the run's "
                                  f"(part vs run: {diff})")
        theirs, ours = src.part_module().state_dict(), self.part_module().state_dict()
        if not diff:
            self.part_module().load_state_dict(theirs)
            log.info("initialised from %s", path)
            return
        copied = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
        self.part_module().load_state_dict({**ours, **copied})
        fresh, dropped = sorted(set(ours) - set(copied)), sorted(set(theirs) - set(copied))
        log.info("initialised from %s (%s changed): %d tensors copied; new: %s; not used: %s", path,
                 ", ".join(diff), len(copied), ", ".join(fresh) or "none", ", ".join(dropped) or "none")

    @classmethod
    def load(cls: type[M], path: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: Any) -> M:
        """The part at `path` in eval mode on `device`; `kwargs` go to the constructor."""
        sd, meta = load_part(path, cls.model_type)
        where = str(Path(path) / CONFIG)
        cfg = cls.config_class.from_dict(meta.get("config"), where)
        try:
            model = cls(cfg, **kwargs)  # type: ignore[call-arg]
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, RuntimeError) as e:
            # a value of the right type the model still cannot be built with (zero heads, a negative size)
            raise ConfigError(f"{where}: invalid config ({type(e).__name__}: {e})") from e
        check_fields(model.cfg, where)  # what __post_init__ made of it, e.g. a nested mel config
        load_state_strict(model.part_module(), sd, str(path))
        return model.to(device).eval()  # type: ignore[attr-defined]

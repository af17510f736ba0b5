"""Released parts that are damaged or hand-edited fail at load with a CodecTTSError naming the file."""
import json

import pytest
import torch

from codectts.errors import CheckpointError, ConfigError
from codectts.models.duration import DurationConfig, DurationModel
from codectts.schema import check_fields, from_dict


@pytest.fixture
def part(tmp_path):
    torch.manual_seed(0)
    model = DurationModel(DurationConfig(text_vocab=20, dim=16, n_layers=1, n_heads=2, ffn_dim=32))
    return model.save(tmp_path / "dur"), model


def edit_config(path, **changes):
    meta = json.loads((path / "config.json").read_text())
    meta["config"].update(changes)
    (path / "config.json").write_text(json.dumps(meta))


def test_nan_or_inf_weights_are_refused(part):
    from safetensors.torch import save_file

    path, model = part
    for bad in (float("nan"), float("inf")):
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        sd["head.bias"][0] = bad
        save_file(sd, str(path / "model.safetensors"))
        with pytest.raises(CheckpointError, match="NaN or Inf.*head.bias"):
            DurationModel.load(path)


def test_missing_or_corrupt_weights(part):
    path, _ = part
    (path / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="corrupt"):
        DurationModel.load(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        DurationModel.load(path)


@pytest.mark.parametrize("changes", [
    {"dim": "16"}, {"n_heads": 0}, {"n_layers": 1.5}, {"frame_rate": "fast"}, {"frame_rate": float("nan")},
    {"max_seq_len": None}, {"unknown_field": 1}, {"dim": -4},
])
def test_bad_part_config_fields_are_config_errors(part, changes):
    path, _ = part
    edit_config(path, **changes)
    with pytest.raises(ConfigError, match="config.json"):
        DurationModel.load(path)


def test_part_config_that_is_not_an_object(part):
    path, _ = part
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="object"):
        DurationModel.load(path)
    meta = {"model_type": "duration", "format_version": 1, "config": "dim=16"}
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="object"):
        DurationModel.load(path)


def test_schema_from_dict_names_the_field():
    from dataclasses import dataclass
    from typing import Literal

    @dataclass
    class Inner:
        kind: Literal["a", "b"]
        size: int = 1

    @dataclass
    class Outer:
        name: str
        inner: Inner
        rate: float | None = None

    ok = from_dict(Outer, {"name": "x", "inner": {"kind": "a"}, "rate": 2}, "f.json")
    assert ok.inner.kind == "a" and ok.rate == 2
    for bad, field in [({"name": 3, "inner": {"kind": "a"}}, "name"),
                       ({"name": "x", "inner": {"kind": "c"}}, "kind"),
                       ({"name": "x", "inner": {"kind": "a", "size": True}}, "size"),
                       ({"name": "x", "inner": {"kind": "a"}, "rate": float("inf")}, "rate"),
                       ({"name": "x", "inner": [1]}, "inner"),
                       ({"name": "x"}, "inner"),
                       ({"name": "x", "inner": {"kind": "a"}, "extra": 1}, "extra")]:
        with pytest.raises(ConfigError, match=field):
            from_dict(Outer, bad, "f.json")
    check_fields(ok, "f.json")
    ok.rate = "2"
    with pytest.raises(ConfigError, match="rate"):
        check_fields(ok, "f.json")

"""Every file in configs/ parses into its dataclass, builds its model, and carries no machine paths."""
import json
from pathlib import Path

import pytest

from codectts.models.talker import Talker, preset
from codectts.text import PhonemeTokenizer
from codectts.train.talker import TalkerRunConfig, build_model

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.json"))


def test_there_are_configs():
    assert len(CONFIGS) >= 7


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_into_its_dataclass_and_builds(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    rc = TalkerRunConfig.from_json(path)  # unknown fields are a ConfigError
    assert raw["_comment"]  # each says what it is for
    for key in ("data_path", "out_dir"):  # the README recipe runs as written: paths relative to the checkout
        assert not Path(getattr(rc, key)).is_absolute(), f"{path.name}: {key} {getattr(rc, key)!r} is a machine path"
    model = build_model(rc, PhonemeTokenizer().vocab_size, 1)
    assert model.cfg.dim == rc.d_model and model.cfg.n_codebooks == rc.codebooks


def _flag(line: str, name: str) -> str | None:
    words = line.split()
    return words[words.index(name) + 1] if name in words else None


def test_readme_recipe_paths_meet():
    """The README's recipe runs as written: the talker reads the cache `codes extract` wrote (its --codes or
    the config's data_path) and make-voice reads the talker's run (its --out or the config's out_dir)."""
    root = Path(__file__).resolve().parent.parent
    lines = (root / "README.md").read_text(encoding="utf-8").splitlines()
    extract = next(line for line in lines if line.startswith("codectts codes extract"))
    talker = next(line for line in lines if line.startswith("codectts train talker --config configs/talker.json"))
    make_voice = next(line for line in lines if line.startswith("codectts make-voice"))
    rc = TalkerRunConfig.from_json(root / _flag(talker, "--config"))
    assert (_flag(talker, "--codes") or rc.data_path) == _flag(extract, "--out")
    assert _flag(make_voice, "--talker") == f"{_flag(talker, '--out') or rc.out_dir}/best"


def test_seed_config_is_the_seed_backbone_plus_text_and_depth_heads():
    """configs/talker_seed.json: seed 001's Talker (2,262,720 parameters) plus a 2-layer phoneme encoder
    and depth heads = 3,405,504, as its description says."""
    rc = TalkerRunConfig.from_json(next(p for p in CONFIGS if p.name == "talker_seed.json"))
    seed = preset("seed")
    assert (rc.d_model, rc.n_layers, rc.n_heads, rc.n_kv_heads, rc.ffn_dim, rc.codebooks, rc.codebook_size) == (
        seed.dim, seed.n_layers, seed.n_heads, seed.n_kv_heads, seed.ffn_dim, seed.n_codebooks, seed.codebook_size)
    assert Talker(seed).num_params() == 2_262_720
    assert build_model(rc, PhonemeTokenizer().vocab_size, 1).num_params() == 3_405_504
    assert "3,405,504" in json.loads((CONFIGS[0].parent / "talker_seed.json").read_text())["_comment"]


@pytest.mark.parametrize(("field", "value"), [("d_model", "256"), ("learning_rate", None), ("depth_heads", 1),
                                              ("n_layers", 4.5), ("codebooks", True), ("bogus", 1)])
def test_bad_fields_are_config_errors(tmp_path, field, value):
    from codectts.errors import ConfigError

    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"d_model": 64, field: value}))
    with pytest.raises(ConfigError, match=field):
        TalkerRunConfig.from_json(p)

"""A Mimi hub id never reaches the network unless the user opts in (CODECTTS_ALLOW_DOWNLOAD=1)."""
import json

import pytest

from codectts.errors import CheckpointError, ConfigError

pytest.importorskip("transformers")


@pytest.fixture
def calls(monkeypatch):
    """Record every MimiModel.from_pretrained call; none finds weights (as on a machine without the cache)."""
    from transformers import MimiModel

    seen = []

    def fake(source, *args, **kwargs):
        seen.append(kwargs.get("local_files_only", False))
        raise OSError(f"{source} not in the local cache")

    monkeypatch.setattr(MimiModel, "from_pretrained", fake)
    monkeypatch.delenv("CODECTTS_ALLOW_DOWNLOAD", raising=False)
    return seen


def test_hub_id_loads_from_the_local_cache_only(calls, monkeypatch):
    from codectts.codecs.mimi import MimiCodec

    with pytest.raises(CheckpointError, match="not available offline"):
        MimiCodec.load("kyutai/mimi")
    assert calls == [True]
    monkeypatch.setenv("CODECTTS_ALLOW_DOWNLOAD", "1")  # the explicit opt-in tries the hub after the cache
    with pytest.raises(CheckpointError, match="download failed"):
        MimiCodec.load("kyutai/mimi")
    assert calls == [True, True, False]


def test_voice_with_a_hub_id_codec_stays_offline(calls, tmp_path):
    from codectts.infer import Synthesizer

    meta = {"format_version": 1, "name": "hub", "model": {"type": "csm", "path": "csm"},
            "codec": {"type": "mimi", "source": "kyutai/mimi", "n_codebooks": 8}}
    (tmp_path / "csm").mkdir()
    (tmp_path / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not available offline"):
        Synthesizer.load(tmp_path)
    assert calls == [True]
    for source in ("../mimi", "/opt/mimi", "a/b/../../..", "kyutai/mimi?x=1"):
        meta["codec"]["source"] = source
        (tmp_path / "voice.json").write_text(json.dumps(meta))
        with pytest.raises(ConfigError, match="voice folder|hub id"):
            Synthesizer.load(tmp_path)
    assert calls == [True]

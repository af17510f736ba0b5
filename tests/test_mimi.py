"""MimiCodec on a tiny random-initialised transformers Mimi saved locally (never downloads anything)."""
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from codectts.codecs.base import Codec, MelCodec  # noqa: E402  (after importorskip)
from codectts.codecs.mimi import MimiCodec  # noqa: E402
from codectts.errors import AudioError, CheckpointError, ConfigError  # noqa: E402

N_QUANTIZERS = 8  # conftest's tiny Mimi
CODEBOOK = 256


@pytest.fixture(scope="module")
def codec(tiny_mimi_dir):
    return MimiCodec.load(tiny_mimi_dir, n_codebooks=N_QUANTIZERS)


def _speechlike(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
            + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_contract_and_spec(codec, tiny_mimi_dir):
    assert isinstance(codec, Codec) and not isinstance(codec, MelCodec)  # decodes to audio: no vocoder
    assert codec.sample_rate == 24_000 and codec.frame_rate == 12.5 and codec.frame_size == 1920
    assert codec.codebook_size == CODEBOOK and codec.n_codebooks == N_QUANTIZERS
    spec = codec.spec()
    assert spec["type"] == "mimi" and spec["source"] == str(tiny_mimi_dir) and spec["n_codebooks"] == N_QUANTIZERS
    again = MimiCodec.from_spec(spec)
    assert again.spec() == spec


@pytest.mark.parametrize("n_samples", [1, 1920, 1921, 5_000])
def test_frame_count(codec, n_samples):
    codes = codec.encode(torch.from_numpy(_speechlike(n_samples / 24_000 + 1e-9, 24_000))[:n_samples][None])
    assert codes.shape == (1, N_QUANTIZERS, math.ceil(n_samples / 1920))
    assert codes.dtype == torch.int64 and 0 <= int(codes.min()) and int(codes.max()) < CODEBOOK


def test_encode_deterministic_and_not_constant(codec):
    wav = torch.from_numpy(_speechlike(0.5, 24_000))[None]
    a, b = codec.encode(wav), codec.encode(wav)
    assert torch.equal(a, b)
    assert len(torch.unique(a)) > 4  # random codebooks: codes actually depend on the audio


def test_batch_encode_equals_items(codec):
    """Padding to whole frames makes an item's codes independent of its batch mates."""
    items = [_speechlike(0.37, 24_000, 1), _speechlike(0.6, 24_000, 2), _speechlike(0.08, 24_000, 3)]
    batch = codec.encode_batch(items)
    for item, codes in zip(items, batch, strict=False):
        alone = codec.encode(torch.from_numpy(item)[None])[0]
        assert codes.shape == (N_QUANTIZERS, math.ceil(len(item) / 1920))
        assert torch.equal(codes, alone)
    # the padded-tensor form gives the same codes before each item's end
    padded = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(x) for x in items], batch_first=True)
    full = codec.encode(padded, lengths=torch.tensor([len(x) for x in items]))
    for codes, row in zip(batch, full, strict=False):
        assert torch.equal(row[:, :codes.shape[1]], codes)


def test_resampling_in_and_out(codec):
    wav16 = _speechlike(0.4, 16_000)
    codes = codec.encode(torch.from_numpy(wav16)[None], sr=16_000)
    assert codes.shape == (1, N_QUANTIZERS, 5)  # 0.4 s at any rate = ceil(9600 / 1920) frames
    out = codec.decode(codes)
    assert out.shape == (1, 5 * 1920)
    out16 = codec.decode(codes, sr=16_000)
    assert abs(out16.shape[1] - 5 * 1920 * 2 / 3) <= 1 and torch.isfinite(out16).all()


def test_fewer_codebooks_is_a_prefix(codec):
    four = MimiCodec(codec.model, n_codebooks=4)
    wav = torch.from_numpy(_speechlike(0.3, 24_000))[None]
    assert torch.equal(four.encode(wav), codec.encode(wav)[:, :4])
    assert four.decode(four.encode(wav)).shape == (1, math.ceil(7_200 / 1920) * 1920)


def test_bad_input(codec, tiny_mimi_dir):
    with pytest.raises(AudioError):
        codec.encode(torch.zeros(1, 0))
    with pytest.raises(AudioError):
        codec.encode(torch.full((1, 2000), float("nan")))
    with pytest.raises(ConfigError, match="out of range"):
        codec.decode(torch.full((1, N_QUANTIZERS, 3), CODEBOOK))
    with pytest.raises(ConfigError):
        codec.decode(torch.zeros(1, N_QUANTIZERS + 1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="n_codebooks"):
        MimiCodec.load(tiny_mimi_dir, n_codebooks=N_QUANTIZERS + 1)


def test_offline_error_says_how_to_get_weights(tmp_path):
    with pytest.raises(CheckpointError, match="save_pretrained"):
        MimiCodec.load("kyutai/mimi", local_only=True, cache_dir=tmp_path)
    with pytest.raises(CheckpointError, match="not a Mimi folder"):
        MimiCodec.load(tmp_path / "missing")

"""Vocos vocoder on tiny configs: shapes, save/load/spec, mel and codec mismatches refused, seamless streaming."""
import json

import pytest
import torch

from codectts.audio.mel import MelConfig, mel_preset
from codectts.codecs.mel_rvq import MelRVQCodec, MelRVQConfig
from codectts.errors import AudioError, CheckpointError, ConfigError
from codectts.vocoders import (
    StreamConfig,
    Vocos,
    load_vocoder,
    stream_config_for,
    vocode_chunked,
)
from codectts.vocoders.vocos import VocosConfig, codec_identity
from codectts.vocoders.vocos import preset as vocos_preset

MEL = mel_preset("vocoder")
HOP = MEL.hop_length


def random_vocos(std: float = 0.1, **overrides) -> Vocos:
    torch.manual_seed(0)
    voc = Vocos(vocos_preset("tiny", **overrides))
    for p in voc.parameters():
        p.data.normal_(0, std)
    return voc.eval()


def tiny_codec(seed: int) -> MelRVQCodec:
    torch.manual_seed(seed)
    return MelRVQCodec(MelRVQConfig(mel=MEL, stack=2, arch="conv", hidden=8, n_res_blocks=1, n_codebooks=2,
                                    codebook_size=8)).eval()


@pytest.mark.parametrize("frames", [1, 7, 40])
def test_shapes_and_hop(frames):
    voc = random_vocos()
    y = voc(torch.randn(2, 80, frames) - 4)
    assert y.shape == (2, frames * HOP) and torch.isfinite(y).all()
    assert voc(torch.randn(80, frames) - 4).shape == (1, frames * HOP)


def test_config_checks_and_bad_mel():
    with pytest.raises(ConfigError):
        vocos_preset("tiny", n_fft=HOP)  # one hop: windows would not overlap
    with pytest.raises(ConfigError):
        vocos_preset("tiny", kernel=4)
    with pytest.raises(ConfigError):
        vocos_preset("huge")
    with pytest.raises(ConfigError):
        VocosConfig.from_dict({**vocos_preset("tiny").to_dict(), "colour": "blue"})
    voc = random_vocos()
    with pytest.raises(ConfigError):
        voc(torch.randn(1, 128, 5))
    with pytest.raises(AudioError):
        voc(torch.full((1, 80, 5), float("nan")))


def test_part_save_load_spec_and_mel_mismatch(tmp_path):
    voc = random_vocos()
    mel = torch.randn(1, 80, 12) - 4
    voc.save(tmp_path / "voice" / "vocoder")
    loaded = Vocos.load(tmp_path / "voice" / "vocoder")
    assert torch.equal(voc(mel), loaded(mel))
    spec = loaded.spec(root=tmp_path / "voice")
    assert spec == {"type": "vocos", "path": "vocoder", "mel": MEL.to_dict()}
    again = load_vocoder(json.loads(json.dumps(spec)), root=tmp_path / "voice")
    assert torch.equal(again(mel), voc(mel))
    with pytest.raises(ConfigError, match="mel"):
        load_vocoder({**spec, "mel": MelConfig(n_mels=128).to_dict()}, root=tmp_path / "voice")
    voc.save(tmp_path / "half", half=True)
    torch.testing.assert_close(Vocos.load(tmp_path / "half")(mel), voc(mel), atol=5e-2, rtol=0)
    with pytest.raises(CheckpointError):
        Vocos.load(tmp_path / "nowhere")


def test_codec_it_was_trained_for_is_enforced(tmp_path):
    from codectts.eval.roundtrip import SoundChain

    a, b = tiny_codec(0), tiny_codec(1)
    a.save(tmp_path / "a")
    a.save(tmp_path / "a_half", half=True)
    a_half = MelRVQCodec.load(tmp_path / "a_half")
    assert codec_identity(a_half) == codec_identity(a)  # fp16 release keeps its identity
    assert codec_identity(b) != codec_identity(a)
    voc = Vocos(vocos_preset("tiny", codec=codec_identity(a)))
    voc.save(tmp_path / "voc")
    voc = Vocos.load(tmp_path / "voc")
    voc.check_codec(a_half)
    SoundChain(vocoder=voc, codec=a_half)
    with pytest.raises(ConfigError, match="decoded mels"):
        SoundChain(vocoder=voc, codec=b)
    Vocos(vocos_preset("tiny")).check_codec(b)  # trained on real mels: any codec of its mel config


def test_receptive_field_bound_is_safe_and_streaming_equals_full():
    voc = random_vocos()
    mel = torch.randn(1, 80, 60) - 4
    base = voc(mel)
    rf = voc.context_frames
    mel2 = mel.clone()
    mel2[..., 30] += 3.0
    diff = (voc(mel2) - base).abs().reshape(-1, HOP).amax(1)
    changed = torch.nonzero(diff > 1e-6).reshape(-1)
    assert changed.numel() and changed.min() >= 30 - rf and changed.max() <= 30 + rf
    for chunk in (1, 5, 16):
        chunked = vocode_chunked(voc, mel, stream_config_for(voc, chunk))
        torch.testing.assert_close(chunked, base, atol=1e-5, rtol=0)
    short = vocode_chunked(voc, mel, StreamConfig(5, left=1, right=1, crossfade_frames=0))
    assert (short - base).abs().max() > 1e-3


def test_stream_chunks_grow_after_the_first_and_stay_exact():
    """First chunk small (latency), then doubling up to max_chunk_frames: fewer windows of recomputed context."""
    from codectts.vocoders import VocoderStream

    voc = random_vocos()
    cfg = stream_config_for(voc, 2)
    assert cfg.max_chunk_frames == 4 * voc.context_frames
    mel = torch.randn(1, 80, 120) - 4
    stream = VocoderStream(voc, cfg)
    pieces = [stream.push(mel[..., i:i + 1]) for i in range(120)]
    sizes = [p.shape[-1] // HOP for p in pieces if p.shape[-1]]
    pieces.append(stream.flush())
    assert sizes[:4] == [2, 4, 8, 16] and max(sizes) <= cfg.max_chunk_frames
    torch.testing.assert_close(torch.cat(pieces, -1), voc(mel), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="max_chunk_frames"):
        StreamConfig(8, max_chunk_frames=4)

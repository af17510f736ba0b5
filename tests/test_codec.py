import numpy as np
import pytest
import torch

from codectts.codecs.base import Codec, MelCodec
from codectts.codecs.mel_rvq import PRESETS, MelRVQCodec, preset
from codectts.codecs.rvq import ResidualVQ
from codectts.errors import AudioError, CheckpointError, ConfigError

PRESET_PARAMS = {"seed": 32_768, "k4x512": 2_296_704, "k6x1024": 2_558_848, "k8x1024": 2_689_920, "tiny": 102_976}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_per_preset(name):
    assert set(PRESET_PARAMS) == set(PRESETS)
    with torch.device("meta"):
        m = MelRVQCodec(preset(name))
    assert m.num_params() == PRESET_PARAMS[name]


def test_presets_and_part_configs_reject_unknown_fields(tmp_path):
    with pytest.raises(ConfigError, match="unknown MelRVQConfig preset"):
        preset("huge")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['hiden'\]"):
        preset("tiny", hiden=3)
    with pytest.raises(ConfigError, match="n_melz"):
        preset("tiny", mel={"n_melz": 80})
    import json

    MelRVQCodec(preset("tiny")).save(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "config.json").read_text())
    meta["config"]["widht"] = 3
    (tmp_path / "c" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="widht"):
        MelRVQCodec.load(tmp_path / "c")


def test_seed_preset_matches_seed_002():
    m = MelRVQCodec(preset("seed"))
    assert m.num_params() == 32_768  # 4 x (128 x 64): proj_in, proj_out, 2 codebooks
    assert m.frame_rate == 12.5 and m.n_codebooks == 2 and m.codebook_size == 128
    assert m.proj_in.bias is None and m.proj_in.weight.shape == (64, 128)


def test_rvq_output_equals_chosen_codewords_and_decode():
    torch.manual_seed(0)
    q = ResidualVQ(n_codebooks=3, codebook_size=16, dim=8, kmeans_init=False).eval()
    x = torch.randn(2, 5, 8)
    out = q(x)
    manual = sum(q.codebooks[k][out.codes[:, k]] for k in range(3))
    assert torch.allclose(out.quantized, manual, atol=1e-6)
    assert torch.allclose(q.decode(out.codes), manual, atol=1e-6)


def test_soft_decode_of_one_hot_probs_is_decode_of_those_codes_and_linear():
    """decode_mel_soft (a TRM's expected latent): one-hot distributions give exactly decode_mel of the codes,
    and a mixture decodes to the mixture of the latents (the decoder sees the expected codeword sum)."""
    torch.manual_seed(0)
    m = MelRVQCodec(preset("tiny")).eval()
    codes = torch.randint(0, 64, (2, 4, 7))
    one_hot = torch.nn.functional.one_hot(codes, 64).float()  # [B, K, F, N]
    assert torch.allclose(m.decode_mel_soft(one_hot), m.decode_mel(codes), atol=1e-5)
    other = torch.randint(0, 64, (2, 4, 7))
    half = 0.5 * one_hot + 0.5 * torch.nn.functional.one_hot(other, 64).float()
    assert torch.allclose(m.rvq.decode_soft(half), 0.5 * (m.rvq.decode(codes) + m.rvq.decode(other)), atol=1e-5)
    with pytest.raises(ConfigError, match="expected probs"):
        m.decode_mel_soft(one_hot[:, :3])
    with pytest.raises(ConfigError, match="NaN"):
        m.decode_mel_soft(torch.full_like(one_hot, float("nan")))


def test_rvq_straight_through_gradient_flows():
    q = ResidualVQ(n_codebooks=2, codebook_size=8, dim=4, kmeans_init=False)
    x = torch.randn(1, 6, 4, requires_grad=True)
    q(x).quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_dead_code_restart_revives_unused_codes():
    torch.manual_seed(0)
    q = ResidualVQ(n_codebooks=1, codebook_size=32, dim=4, kmeans_init=False, decay=0.5, dead_threshold=0.5)
    q.codebooks.data[0, 1:] = 100.0  # every code but 0 is far away: dead
    q.train()
    for _ in range(6):
        q(torch.randn(4, 64, 4))
    q.eval()
    used = torch.unique(q(torch.randn(4, 64, 4)).codes)
    assert len(used) > 8


def test_kmeans_init_and_training_reduce_error():
    torch.manual_seed(0)
    m = MelRVQCodec(preset("k4x512", codebook_size=32, hidden=32))
    # structured "speech-like" mels: a few spectral templates mixed over time
    templates, mix = torch.randn(80, 3), torch.randn(4, 3, 64).softmax(1)
    mel = torch.einsum("mk,bkt->bmt", templates, mix) * 3 - 5
    m.set_stats(mel.mean((0, 2)), mel.std((0, 2)))
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        out = m(mel)
        loss = torch.nn.functional.mse_loss(out.recon, out.target) + 0.25 * out.rvq.commit_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_codec_roundtrip_shapes_and_save_load(tmp_path):
    torch.manual_seed(0)
    m = MelRVQCodec(preset("k4x512")).eval()
    mel = torch.randn(2, 80, 37)
    codes = m.encode_mel(mel)
    assert codes.shape == (2, 4, 10) and codes.dtype == torch.long
    assert m.decode_mel(codes).shape == (2, 80, 40)
    m.save(tmp_path / "c")
    m2 = MelRVQCodec.load(tmp_path / "c")
    assert isinstance(m2, Codec) and isinstance(m2, MelCodec)  # what the Synthesizer streams through
    assert m2.mel_frames_per_code == 4 and m2.mel == m.cfg.mel and m2.context_frames == 6
    assert torch.equal(m2.encode_mel(mel), codes)
    assert torch.allclose(m2.decode_mel(codes), m.decode_mel(codes), atol=1e-5)


def test_codec_bad_input():
    m = MelRVQCodec(preset("k4x512")).eval()
    with pytest.raises(ConfigError):
        m.decode_mel(torch.full((1, 4, 3), 600))
    with pytest.raises(ConfigError):
        m.decode_mel(torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(AudioError):
        m.encode_mel(torch.full((1, 80, 4), float("nan")))
    with pytest.raises(AudioError):
        m.encode_mel(torch.zeros(1, 64, 4))
    with pytest.raises(ConfigError, match="no vocoder"):
        m.decode(torch.zeros(1, 4, 3, dtype=torch.long))
    with pytest.raises(CheckpointError, match="not a model"):
        MelRVQCodec.load("/nonexistent/codec")


def test_codec_vocoder_mismatch_is_an_error():
    from codectts.audio.mel import mel_preset
    from codectts.vocoders import GriffinLim

    with pytest.raises(ConfigError, match="mel settings differ"):
        MelRVQCodec(preset("k4x512"), vocoder=GriffinLim(mel_preset("16k")))


def test_code_cache_roundtrip(tmp_path):
    from codectts.data.codecache import CacheEntry, CodeCache, write_cache_meta, write_codes, write_index

    codes = np.random.randint(0, 512, size=(4, 9))
    write_cache_meta(tmp_path, {"type": "mel_rvq", "path": "x"}, 4, 512, 21.5, 22050, "corpus")
    rel = write_codes(tmp_path, "u1", codes, 512)
    write_index(tmp_path, [CacheEntry(id="u1", text="hi", n_frames=9, file=rel, phonemes=["^", "$"], durations=[4, 5])])
    cache = CodeCache(tmp_path)
    assert len(cache) == 1 and cache.n_codebooks == 4
    assert torch.equal(cache.codes(0), torch.from_numpy(codes))
    from codectts.errors import DataError

    with pytest.raises(DataError, match="another codec"):
        write_cache_meta(tmp_path, {"type": "mel_rvq", "path": "y"}, 4, 512, 21.5, 22050, "corpus")


def test_spectral_contrast_loss_penalises_smoothing_that_mse_barely_sees():
    from codectts.train.codec import spectral_contrast_loss

    torch.manual_seed(0)
    target = torch.randn(2, 16, 40)
    blurred = torch.nn.functional.avg_pool1d(target, 3, stride=1, padding=1, count_include_pad=False)
    assert float(spectral_contrast_loss(target, target)) == 0.0
    # smoothing removes most of the local contrast: the difference terms grow faster than the plain MSE
    mse = float(torch.nn.functional.mse_loss(blurred, target))
    assert float(spectral_contrast_loss(blurred, target)) > 2 * mse

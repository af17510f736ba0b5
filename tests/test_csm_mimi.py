"""CSM end to end through a real Codec (a tiny random Mimi): reference audio in, waveform out."""
import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from codectts.codecs.mimi import MimiCodec
from codectts.infer.csm import CSMGenerator
from codectts.models.csm import CSM, csm_preset
from codectts.text.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    from transformers import MimiConfig, MimiModel

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = MimiConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                     head_dim=16, intermediate_size=128, num_filters=16, num_quantizers=8, codebook_size=256,
                     codebook_dim=64, vector_quantization_hidden_dimension=64, upsample_groups=64)
    model = MimiModel(cfg)
    for name, buf in model.named_buffers():
        if name.endswith("embed_sum"):
            buf.normal_()
    path = tmp_path_factory.mktemp("mimi")
    model.save_pretrained(path)
    yield MimiCodec.load(path, n_codebooks=4)
    torch.set_num_threads(before)


def test_reference_audio_to_waveform(codec):
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = CSM(csm_preset("tiny", text_vocab_size=tok.vocab_size, n_codebooks=4, codebook_size=256))
    gen = CSMGenerator(model, codec, tok)
    t = np.arange(16_000 * 0.5) / 16_000
    ref = gen.reference_from_audio((0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16_000, "a tone")
    assert ref.codes.shape == (4, 7)  # 0.5 s -> 12,000 samples at 24 kHz -> ceil(12000 / 1920) frames
    res = gen.generate("hello there", reference=ref, max_frames=6, min_frames=6, seed=0)
    assert res.codes.shape == (4, 6) and res.sample_rate == 24_000
    assert res.wav.shape == (6 * 1920,) and torch.isfinite(res.wav).all()
    plain = gen.generate("hello there", max_frames=6, min_frames=6, seed=0)
    assert not torch.equal(plain.codes, res.codes)  # the reference context changes the continuation

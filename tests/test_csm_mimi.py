"""CSM end to end through a real Codec (a tiny random Mimi): reference audio in, waveform out."""
import pytest
import torch

pytest.importorskip("transformers")

from codectts.codecs.mimi import MimiCodec
from codectts.infer.csm import CSMGenerator
from codectts.models.csm import CSM, preset
from codectts.text.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def codec(tiny_mimi_dir):
    return MimiCodec.load(tiny_mimi_dir, n_codebooks=4)


def test_reference_audio_to_waveform(codec, sine):
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = CSM(preset("tiny", text_vocab_size=tok.vocab_size, n_codebooks=4, codebook_size=256))
    gen = CSMGenerator(model, codec, tok)
    ref = gen.reference_from_audio(sine(200, 16_000, 0.5, 0.3), 16_000, "a tone")
    assert ref.codes.shape == (4, 7)  # 0.5 s -> 12,000 samples at 24 kHz -> ceil(12000 / 1920) frames
    res = gen.generate("hello there", reference=ref, max_frames=6, min_frames=6, seed=0)
    assert res.codes.shape == (4, 6) and res.sample_rate == 24_000
    assert res.wav.shape == (6 * 1920,) and torch.isfinite(res.wav).all()
    plain = gen.generate("hello there", max_frames=6, min_frames=6, seed=0)
    assert not torch.equal(plain.codes, res.codes)  # the reference context changes the continuation

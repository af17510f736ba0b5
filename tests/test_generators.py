"""Codes pinned from the generation paths before they moved out of the models (Talker.generate_aligned /
generate_prefix, infer.trm.sample_codes, CSMGenerator with its own defaults): tiny seeded models, fixed
sampling seeds. The generators in infer/ must reproduce them exactly (same RNG draws, same numerics)."""
import torch

from codectts.infer.csm import CSMGenerator
from codectts.infer.talker import TalkerGenerator
from codectts.infer.trm import generate
from codectts.models.csm import CSM
from codectts.models.csm import preset as csm_preset
from codectts.models.sampling import SamplingConfig
from codectts.models.talker import Talker, TalkerConfig
from codectts.models.trm import TTSTRM
from codectts.models.trm import preset as trm_preset
from codectts.text import CharTokenizer

REF = {"aligned": [[[0, 1, 3, 1, 7, 6, 2, 15, 3, 14, 14, 14, 8, 10],
                    [6, 15, 0, 10, 11, 2, 9, 11, 15, 13, 15, 2, 11, 12], [0, 5, 5, 5, 0, 12, 3, 9, 7, 3, 5, 0, 4, 3]]],
       "aligned_window_topp": [[[13, 5, 9, 5, 7, 0, 7, 3, 10, 5, 8, 5, 12, 3],
                                [11, 11, 0, 8, 7, 9, 6, 13, 9, 8, 13, 1, 8, 12],
                                [2, 3, 5, 8, 5, 14, 2, 9, 12, 8, 11, 1, 5, 14]]],
       "csm": [[0, 13, 11, 10, 3, 1], [15, 0, 1, 14, 4, 12], [0, 3, 6, 11, 13, 11]],
       "csm_ref": [[14, 1, 1, 2, 4], [1, 7, 9, 11, 11], [4, 2, 1, 4, 5]],
       "none": [[[6, 12, 4, 7, 8, 15, 6], [3, 1, 11, 7, 12, 7, 3], [3, 11, 5, 9, 7, 1, 12]]],
       "prefix_batch": [[[14, 4, 5, 0], [13, 12, 6, 11], [10, 0, 13, 3]],
                        [[5, 11, 16, 16], [12, 16, 16, 16], [9, 6, 16, 16]]],
       "trm": [[13, 2, 19, 16, 5, 8, 7, 16, 30], [4, 2, 24, 10, 12, 24, 29, 21, 7], [24, 19, 7, 27, 5, 8, 12, 1, 13]],
       "trm_topp": [[22, 14, 14, 10, 14, 10, 17], [20, 4, 9, 3, 11, 12, 8], [8, 23, 12, 15, 16, 7, 15]]}
TEXT = torch.tensor([[1, 5, 6, 7, 8, 2]])
DUR = torch.tensor([[1, 3, 2, 4, 3, 1]])


def talker(conditioning, depth=True, **kw) -> TalkerGenerator:
    torch.manual_seed(0)
    cfg = TalkerConfig(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, n_codebooks=3, codebook_size=16,
                       conditioning=conditioning, text_vocab=20 if conditioning != "none" else 0,
                       text_layers=1 if conditioning == "aligned" else 0, depth_heads=depth, max_seq_len=128, **kw)
    return TalkerGenerator(Talker(cfg))


def codes(chunks) -> list:
    return torch.cat(list(chunks), 2).tolist()


def test_talker_aligned_codes_are_unchanged():
    gen = talker("aligned")
    g = torch.Generator().manual_seed(3)
    assert codes(gen.aligned(TEXT, DUR, SamplingConfig(temperature=1.0, top_k=6), generator=g)) == REF["aligned"]
    g = torch.Generator().manual_seed(4)
    s = SamplingConfig(temperature=0.9, top_k=None, top_p=0.8)
    got = codes(gen.aligned(TEXT, DUR, s, generator=g, window=3, text_window=2, chunk_frames=4))
    assert got == REF["aligned_window_topp"]


def test_talker_prefix_and_unconditional_codes_are_unchanged():
    gen = talker("prefix", n_speakers=2)
    texts = torch.tensor([[0, 1, 5, 6, 2], [1, 7, 8, 9, 2]])
    g = torch.Generator().manual_seed(5)
    got = codes(gen.prefix(texts, 12, SamplingConfig(temperature=1.5, top_k=None), speaker=torch.tensor([0, 1]),
                           generator=g))
    assert got == REF["prefix_batch"]  # item 1 stopped first: EOS codes (16) pad it
    g = torch.Generator().manual_seed(6)
    old_default = SamplingConfig(temperature=0.7, top_k=50)  # what the old SamplingConfig() was
    assert codes(talker("none", depth=False).prefix(None, 7, old_default, chunk_frames=2, generator=g)) == REF["none"]


def test_trm_codes_are_unchanged():
    tok = CharTokenizer()
    torch.manual_seed(0)
    trm = TTSTRM(trm_preset("tiny", vocab_size=tok.vocab_size, n_speakers=2, n_codebooks=3, codebook_size=32)).eval()
    got = generate(trm, "hi there", 1, n_frames=9, tokenizer=tok, sampling=SamplingConfig(0.8, top_k=50), seed=4)
    assert got.tolist() == REF["trm"]
    got = generate(trm, "hi there", 0, n_frames=7, tokenizer=tok, sampling=SamplingConfig(1.2, top_k=None, top_p=0.7),
                   seed=5)
    assert got.tolist() == REF["trm_topp"]


def test_csm_codes_are_unchanged():
    tok = CharTokenizer()
    torch.manual_seed(0)
    gen = CSMGenerator(CSM(csm_preset("tiny", text_vocab_size=tok.vocab_size, n_codebooks=3, codebook_size=16)),
                       tokenizer=tok)
    got = gen.generate("cab", sampling=SamplingConfig(0.9, top_k=50), max_frames=6, seed=3).codes
    assert got.tolist() == REF["csm"]
    ref_codes = torch.randint(0, 16, (3, 4), generator=torch.Generator().manual_seed(1))
    got = gen.generate("dog", (ref_codes, "cat"), sampling=SamplingConfig(1.0, top_k=8, top_p=0.9), max_frames=5,
                       min_frames=2, seed=7).codes
    assert got.tolist() == REF["csm_ref"]

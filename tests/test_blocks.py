import pytest
import torch

from codectts.models.blocks import Transformer, TransformerConfig, apply_rope, make_caches, rope_tables


def test_rope_relative_property():
    """<rope(q, m), rope(k, n)> depends only on m - n."""
    torch.manual_seed(0)
    cos, sin = rope_tables(16, 64)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def dot(m, n):
        return (apply_rope(q, cos[m:m + 1], sin[m:m + 1]) * apply_rope(k, cos[n:n + 1], sin[n:n + 1])).sum()

    assert torch.allclose(dot(5, 2), dot(13, 10), atol=1e-5)
    assert not torch.allclose(dot(5, 2), dot(5, 3), atol=1e-3)


def test_gqa_equals_mha_when_kv_heads_equal_heads():
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=32, n_layers=1, n_heads=4, n_kv_heads=4, ffn_dim=64, max_seq_len=32)
    m = Transformer(cfg).eval()
    x = torch.randn(2, 7, 32)
    attn = m.layers[0].attn
    # reference multi-head attention written out by hand
    q = attn.wq(x).view(2, 7, 4, 8).transpose(1, 2)
    k = attn.wk(x).view(2, 7, 4, 8).transpose(1, 2)
    v = attn.wv(x).view(2, 7, 4, 8).transpose(1, 2)
    q, k = apply_rope(q, m.cos[:7], m.sin[:7]), apply_rope(k, m.cos[:7], m.sin[:7])
    att = (q @ k.transpose(-1, -2)) / 8 ** 0.5
    att = att.masked_fill(torch.triu(torch.ones(7, 7, dtype=torch.bool), 1), float("-inf")).softmax(-1)
    ref = attn.wo((att @ v).transpose(1, 2).reshape(2, 7, 32))
    assert torch.allclose(attn(x, m.cos[:7], m.sin[:7]), ref, atol=1e-5)


def test_gqa_shares_kv_heads():
    cfg = TransformerConfig(dim=48, n_layers=1, n_heads=6, n_kv_heads=2, ffn_dim=64)
    attn = Transformer(cfg).layers[0].attn
    assert attn.wk.weight.shape == (2 * 8, 48) and attn.wq.weight.shape == (48, 48)


def test_kv_cache_decoding_equals_full_forward():
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=64)
    m = Transformer(cfg).eval()
    x = torch.randn(2, 10, 32)
    full = m(x)
    caches = make_caches(cfg, 2, max_len=16)
    out = [m(x[:, :4], start=0, caches=caches)]  # prefill
    out.append(m(x[:, 4:6], start=4, caches=caches))  # chunked prefill on a filled cache
    for t in range(6, 10):
        out.append(m(x[:, t:t + 1], start=t, caches=caches))
    assert torch.allclose(torch.cat(out, 1), full, atol=1e-5)


def test_causality():
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=64)
    m = Transformer(cfg).eval()
    x = torch.randn(1, 8, 32)
    y = x.clone()
    y[:, 5:] += 1.0
    assert torch.allclose(m(x)[:, :5], m(y)[:, :5], atol=1e-6)
    assert not torch.allclose(m(x)[:, 5:], m(y)[:, 5:], atol=1e-3)


def test_windowed_decoding_equals_a_banded_causal_forward():
    """A cache with window W: each decoding step attends to the last W positions (itself included)."""
    torch.manual_seed(0)
    cfg = TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=64)
    m = Transformer(cfg).eval()
    x = torch.randn(1, 12, 32)
    i = torch.arange(12)
    band = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 4)  # query i sees keys i-3 .. i
    ref = m(x, mask=band[None, None])
    caches = make_caches(cfg, 1, max_len=12, window=4)
    out = torch.cat([m(x[:, t:t + 1], start=t, caches=caches) for t in range(12)], 1)
    assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out, m(x), atol=1e-3)  # and it differs from unbounded attention


def test_band_mask():
    from codectts.models.blocks import band_mask

    m = band_mask(torch.tensor([4, 2]), 4, window=1)[:, 0]
    assert m[0].tolist() == [[True, True, False, False], [True, True, True, False],
                             [False, True, True, True], [False, False, True, True]]
    assert m[1, :2].tolist() == [[True, True, False, False], [True, True, False, False]]  # no padded keys
    assert band_mask(torch.tensor([3]), 3, None)[0, 0].all()


def test_a_full_kv_cache_is_a_generation_error():
    from codectts.errors import GenerationError
    from codectts.models.blocks import KVCache

    cache = KVCache(1, 1, 2, 4)
    cache.append(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    with pytest.raises(GenerationError, match="KV cache full"):
        cache.append(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4))

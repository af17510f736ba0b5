"""The one sampler: greedy, top-k, the nucleus boundary (smallest set reaching top_p), config checks."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codectts.errors import ConfigError
from codectts.models.sampling import SamplingConfig, filter_logits, sample_logits


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, :2]).all()
    assert torch.isfinite(filter_logits(logits, top_k=2)[0, 2:]).all()
    # softmax([0,1,2,3]) = .032 .087 .237 .644: top_p 0.7 keeps {3, 2}, top_p 0.5 keeps {3}
    assert torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist() == [False, False, True, True]
    assert torch.isfinite(filter_logits(logits, top_p=0.5))[0].tolist() == [False, False, False, True]
    assert torch.equal(filter_logits(logits, top_k=4, top_p=1.0), logits)  # no-op settings change nothing


def test_nucleus_boundary_a_token_reaching_top_p_exactly_is_the_last_kept():
    """Four equal tokens (0.25 each, exact in binary): top_p 0.5 keeps two, not three."""
    logits = torch.zeros(1, 4)
    assert int(torch.isfinite(filter_logits(logits, top_p=0.5)).sum()) == 2
    assert int(torch.isfinite(filter_logits(logits, top_p=0.5000001)).sum()) == 3
    assert int(torch.isfinite(filter_logits(logits, top_p=0.25)).sum()) == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-8, 8, allow_nan=False), min_size=1, max_size=24), st.floats(0.01, 1.0))
def test_nucleus_is_the_smallest_set_of_most_likely_tokens_reaching_top_p(values, top_p):
    logits = torch.tensor([values], dtype=torch.float32)
    kept = torch.isfinite(filter_logits(logits, top_p=top_p))[0]
    probs = logits.softmax(-1)[0].double()
    order = torch.sort(logits[0], descending=True).indices
    n = int(kept.sum())
    assert n >= 1 and kept[order[0]]  # the most likely token always stays
    assert kept[order[:n]].all()  # the kept set is a prefix of the ranking
    before_last = float(probs[order[: n - 1]].sum())
    assert before_last < top_p + 1e-6  # dropping the last kept token would fall short of top_p
    if n < len(values):
        assert float(probs[order[:n]].sum()) >= top_p - 1e-6  # what is kept reaches top_p


def test_sampling_draws_only_kept_codes_and_greedy_is_argmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    draws = sample_logits(logits.expand(500, 4), SamplingConfig(temperature=1.0, top_k=2), g)
    assert set(draws.tolist()) == {2, 3}
    assert torch.equal(sample_logits(logits, SamplingConfig(temperature=0)), torch.tensor([3]))
    many = torch.randn(2, 3, 5, 7)  # any leading shape: one draw per row
    assert sample_logits(many, SamplingConfig(), torch.Generator().manual_seed(1)).shape == (2, 3, 5)


def test_same_generator_state_same_draws():
    logits = torch.randn(6, 30)
    a = sample_logits(logits, SamplingConfig(temperature=0.9, top_k=10, top_p=0.8), torch.Generator().manual_seed(7))
    b = sample_logits(logits, SamplingConfig(temperature=0.9, top_k=10, top_p=0.8), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [dict(temperature=-0.1), dict(temperature=math.inf), dict(temperature="hot"),
                                 dict(top_k=0), dict(top_k=2.5), dict(top_p=0.0), dict(top_p=1.5),
                                 dict(top_p=math.nan)])
def test_bad_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        SamplingConfig(**bad)


def test_one_default_read_from_voice_json_and_overridden_per_request():
    assert SamplingConfig() == SamplingConfig.from_dict({}) == SamplingConfig(0.6, 20, None)
    voice = SamplingConfig.from_dict({"temperature": 0.5, "top_k": 20})
    assert voice.override(top_p=0.9) == SamplingConfig(0.5, 20, 0.9)
    assert voice.override() == voice
    with pytest.raises(ConfigError, match="temprature"):
        SamplingConfig.from_dict({"temprature": 0.5})


def test_non_finite_logits_are_a_generation_error():
    from codectts.errors import GenerationError

    with pytest.raises(GenerationError, match="non-finite"):
        sample_logits(torch.tensor([[0.0, float("nan"), 1.0]]), SamplingConfig(temperature=1.0, top_k=None))


def test_a_top_p_below_float32_resolution_keeps_the_most_likely_token():
    # 1e-300 is 0.0 in float32: every token used to be dropped and sampling failed on NaN probabilities.
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 3.0, 0.0]])
    kept = filter_logits(logits, top_p=1e-300)
    assert torch.isfinite(kept).sum(-1).tolist() == [1, 1]
    assert sample_logits(logits, SamplingConfig(temperature=1.0, top_k=None, top_p=1e-300)).tolist()[0] == 1

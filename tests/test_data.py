import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codectts.data.alignment import convert_durations, merge_sentence_chunks
from codectts.data.manifest import Utterance, read_corpus, read_jsonl, read_ljspeech, write_jsonl
from codectts.data.sampler import DynamicBatchSampler
from codectts.errors import DataError


def test_ljspeech_reader_skips_bad_rows(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(b"a1|Hello there.|Hello there.\n\nbad line\na2|Two fields\n"
                                             + b"a3|\xff\xfe broken\n")
    utts = read_ljspeech(tmp_path)
    assert [u.id for u in utts] == ["a1", "a2"] and utts[1].normalized == ""
    assert utts[0].audio_path(tmp_path) == tmp_path / "wavs" / "a1.wav"
    with pytest.raises(DataError, match="metadata.csv:3"):
        read_ljspeech(tmp_path, strict=True)
    with pytest.raises(DataError, match="no metadata.csv"):
        read_ljspeech(tmp_path / "nowhere")


def test_jsonl_roundtrip_and_bad_lines(tmp_path):
    u = Utterance(id="x", audio="wavs/x.wav", text="Hi", phonemes=["^", "h", "$"], durations=[1, 2, 3], hop=256,
                  sample_rate=22050)
    write_jsonl(tmp_path / "m.jsonl", [u])
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write("{not json\n" + json.dumps({"id": "y"}) + "\n")
    back = read_jsonl(tmp_path / "m.jsonl")
    assert back == [u]
    assert read_corpus(tmp_path / "m.jsonl")[0] == [u]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=60), st.sampled_from([(86.13, 21.53), (86.13, 12.5), (1.0, 1.12)])
)
def test_duration_conversion_keeps_total_exact(durs, rates):
    if sum(durs) == 0:
        return
    src, dst = rates
    total = int(round(sum(durs) * dst / src))
    out = convert_durations(durs, src, dst, total=total)
    assert out.sum() == total and (out >= 0).all() and len(out) == len(durs)
    # boundaries stay within one target frame of the exact ones
    exact = np.cumsum(durs) * total / sum(durs)
    assert np.abs(np.cumsum(out) - exact).max() <= 0.5 + 1e-9


def test_chunk_merge():
    merged = merge_sentence_chunks([[("^", 256), ("a", 512), ("$", 256)], [("^", 256), ("b", 256), ("$", 512)]])
    assert [p for p, _ in merged] == ["^", "a", " ", "b", "$"] and sum(n for _, n in merged) == 2048
    with pytest.raises(DataError):
        merge_sentence_chunks([[("a", 1)]])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 700), min_size=1, max_size=300),
    st.integers(1, 16),
    st.integers(700, 5000),
    st.integers(0, 5),
)
def test_sampler_bounds_and_determinism(lengths, max_samples, max_tokens, seed):
    s = DynamicBatchSampler(lengths, max_samples=max_samples, max_tokens=max_tokens, seed=seed)
    batches = s.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= max_samples
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens
    assert batches == DynamicBatchSampler(lengths, max_samples, max_tokens, seed=seed).batches(0)


def test_sampler_shards_across_ranks():
    lengths = list(range(1, 200))
    ranks = [DynamicBatchSampler(lengths, 8, 2000, seed=1, rank=r, world_size=2).batches(3) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    assert not set(map(tuple, ranks[0])) & set(map(tuple, ranks[1]))

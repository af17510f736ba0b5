import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codectts.data.alignment import convert_durations, merge_sentence_chunks
from codectts.data.manifest import Utterance, read_corpus, read_jsonl, read_ljspeech, write_jsonl
from codectts.data.sampler import DynamicBatchSampler
from codectts.errors import ConfigError, DataError, GenerationError


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


def test_sampler_settings_are_config_errors():
    with pytest.raises(ConfigError, match="positive"):
        DynamicBatchSampler([1, 2], max_samples=0)
    with pytest.raises(ConfigError, match="outside world"):
        DynamicBatchSampler([1, 2], rank=2, world_size=2)
    with pytest.raises(DataError, match="longer than max_tokens"):
        DynamicBatchSampler([1, 9], max_tokens=5, drop_overlong=False)


def test_corpus_flags_and_teacher_failures(tmp_path):
    from types import SimpleNamespace as NS

    from codectts.data.corpus import TEACHER_HOP, build_corpus, synthesize_aligned

    with pytest.raises(ConfigError, match="--hours"):
        build_corpus(tmp_path, hours=0)
    with pytest.raises(ConfigError, match="--speakers"):
        build_corpus(tmp_path, hours=1, speakers=0)
    pytest.importorskip("piper")

    def voice(*chunks):  # a stand-in teacher that yields the given chunks
        return NS(synthesize=lambda text, syn_config, include_alignments: iter(chunks))

    def chunk(samples, audio):
        aligned = samples and [NS(phoneme=p, num_samples=n) for p, n in zip("^a$", samples, strict=True)]
        return NS(phoneme_alignments=aligned, audio_float_array=np.zeros(audio, np.float32))

    hop = TEACHER_HOP
    wav, phonemes, durations = synthesize_aligned(voice(chunk([hop, 2 * hop, hop], 4 * hop)), "a")
    assert len(wav) == 4 * hop and phonemes == ["^", "a", "$"] and durations == [1, 2, 1]
    with pytest.raises(ConfigError, match="onnx"):  # the teacher lacks its alignment output: nothing will work
        synthesize_aligned(voice(chunk(None, hop)), "a")
    with pytest.raises(GenerationError, match="no audio"):  # this sentence only: the builder skips it
        synthesize_aligned(voice(), "a")
    with pytest.raises(GenerationError, match="do not match"):
        synthesize_aligned(voice(chunk([hop, hop, hop], 4 * hop)), "a")


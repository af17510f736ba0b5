"""Batched decoding (infer/batch.py on torch, infer/onnx_talker.py on the frame graph): sentences that share
steps give the codes they give alone on the eager Talker, join and leave at any step, leave when cancelled,
and one sentence's failure does not reach the others."""
import threading

import pytest
import torch

from codectts.errors import GenerationError
from codectts.infer.batch import BatchedTalker
from codectts.infer.talker import TalkerGenerator
from codectts.models.sampling import SamplingConfig
from codectts.models.talker import Talker, preset

SAMPLED = SamplingConfig(temperature=1.0, top_k=8)
# (phoneme ids, durations): different lengths, so sentences leave the batch at different steps
SENTENCES = [([3, 9, 27, 4, 60, 2], [2, 3, 1, 4, 2, 3]), ([5, 8, 13, 21, 34], [1, 2, 2, 3, 2]),
             ([7, 7, 40, 11], [4, 4, 5, 6]), ([12, 90], [1, 2])]


@pytest.fixture(scope="module")
def talker() -> Talker:
    torch.manual_seed(0)
    model = Talker(preset("tiny", n_codebooks=3, n_heads=4, n_kv_heads=2)).eval()
    for p in model.parameters():  # larger than the init's std 0.02, so logits are far from ties
        p.data.normal_(0, 0.3)
    return model


@pytest.fixture(scope="module", params=["torch", "onnx"])
def batcher(request, talker, tmp_path_factory):
    """batcher(max_batch) -> a BatchedTalker over the eager Talker, or a BatchedOnnxTalker over its graph."""
    if request.param == "torch":
        return lambda n: BatchedTalker(talker, n)
    pytest.importorskip("onnxruntime")
    from codectts.infer.onnx_talker import BatchedOnnxTalker, OnnxTalker

    graph = OnnxTalker(talker, cache_dir=tmp_path_factory.mktemp("onnx"))
    return lambda n: BatchedOnnxTalker(graph, n)


def alone(model, i, seed, window=None, sampling=SAMPLED):
    ids, dur = SENTENCES[i]
    g = torch.Generator().manual_seed(seed)
    chunks = TalkerGenerator(model).aligned(torch.tensor([ids]), torch.tensor([dur]), sampling, generator=g,
                                            window=window, chunk_frames=3)
    return torch.cat(list(chunks), 2)


def batched_iter(bt, i, seed, window=None, sampling=SAMPLED, chunk=3):
    ids, dur = SENTENCES[i]
    g = torch.Generator().manual_seed(seed)
    return bt.aligned(torch.tensor([ids]), torch.tensor([dur]), sampling, generator=g, window=window,
                      chunk_frames=chunk)


def run_together(jobs):
    """Each job (a zero-argument callable returning an iterator) consumed in its own thread -> codes or error."""
    out: list = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def work(j):
        start.wait()
        try:
            out[j] = torch.cat(list(jobs[j]()), 2)
        except Exception as e:  # noqa: BLE001
            out[j] = e

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


@pytest.mark.parametrize("window", [None, 4])
def test_batched_codes_equal_alone(talker, batcher, window):
    """Four sentences of different lengths at once (greedy and sampled, seeds per sentence) = each alone."""
    for sampling in (SamplingConfig(temperature=0), SAMPLED):
        bt = batcher(4)
        got = run_together([lambda i=i, bt=bt, sampling=sampling: batched_iter(bt, i, 10 + i, window, sampling)
                            for i in range(4)])
        for i in range(4):
            assert torch.equal(got[i], alone(talker, i, 10 + i, window, sampling)), i
        assert bt.steps < bt.rows_stepped  # the steps were shared


def test_more_sentences_than_rows_wait_and_join_later(talker, batcher):
    """max_batch 2 with 4 sentences: later ones join as earlier ones leave; codes still equal."""
    bt = batcher(2)
    got = run_together([lambda i=i: batched_iter(bt, i, i) for i in range(4)])
    for i in range(4):
        assert torch.equal(got[i], alone(talker, i, i))


def test_joining_mid_sentence(talker, batcher):
    """A sentence that joins while another is half done: both give their codes."""
    bt = batcher(4)
    first = batched_iter(bt, 2, 5, chunk=1)
    head = [next(first) for _ in range(5)]
    second = torch.cat(list(batched_iter(bt, 0, 6)), 2)
    rest = torch.cat(head + list(first), 2)
    assert torch.equal(rest, alone(talker, 2, 5)) and torch.equal(second, alone(talker, 0, 6))


def test_a_closed_sentence_leaves_and_frees_its_row(talker, batcher):
    bt = batcher(1)  # one row: the next sentence can only run once the first has left
    first = batched_iter(bt, 2, 5, chunk=1)
    next(first)
    first.close()
    second = torch.cat(list(batched_iter(bt, 0, 6)), 2)
    assert torch.equal(second, alone(talker, 0, 6))
    assert bt.rows_stepped < 19 + 13  # the closed one did not run to its end


def test_a_failing_sentence_does_not_poison_the_others(talker, batcher, monkeypatch):
    """Sentence 1's conditioning is NaN: it fails with GenerationError; the others give their codes."""
    real = talker.frame_conditioning
    bad = torch.tensor([SENTENCES[1][0]])

    def poisoned(text, *args, **kwargs):
        cond, mask = real(text, *args, **kwargs)
        if text.shape == bad.shape and torch.equal(text, bad):
            cond = torch.full_like(cond, float("nan"))
        return cond, mask

    monkeypatch.setattr(talker, "frame_conditioning", poisoned)
    bt = batcher(4)
    got = run_together([lambda i=i: batched_iter(bt, i, i) for i in range(4)])
    monkeypatch.undo()
    assert isinstance(got[1], GenerationError)
    for i in (0, 2, 3):
        assert torch.equal(got[i], alone(talker, i, i)), i


def test_rows_with_their_own_sampling_and_windows(talker, batcher):
    """One batch, four sentences with different sampling options (greedy, top-k, nucleus, both) and
    windows (the others join a sentence with a 2-frame window 4 frames in, so the rings grow and are
    laid out again): each = alone."""
    opts = [(SamplingConfig(temperature=0), None), (SAMPLED, 3), (SamplingConfig(0.7, top_k=None, top_p=0.8), 2),
            (SamplingConfig(1.3, top_k=3, top_p=0.5), None)]
    bt = batcher(4)
    first = batched_iter(bt, 2, 22, opts[2][1], opts[2][0], chunk=1)
    head = [next(first) for _ in range(4)]
    got = run_together([lambda i=i: batched_iter(bt, i, 20 + i, opts[i][1], opts[i][0]) for i in (0, 1, 3)])
    rest = torch.cat(head + list(first), 2)
    assert torch.equal(rest, alone(talker, 2, 22, opts[2][1], opts[2][0]))
    for j, i in enumerate((0, 1, 3)):
        assert torch.equal(got[j], alone(talker, i, 20 + i, opts[i][1], opts[i][0])), i


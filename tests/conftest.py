"""Fixtures shared by the test files: one torch thread, a cache folder of the session's own, sine waves,
tiny random codecs (mel RVQ, Mimi)."""
import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # module- and session-scoped fixtures are built before `one_thread` first runs
# ONNX graphs the default backend exports (and anything else cached) go to a folder of the session's own,
# not the user's ~/.cache; set before any test module imports codectts.
if "CODECTTS_CACHE" not in os.environ:
    os.environ["CODECTTS_CACHE"] = tempfile.mkdtemp(prefix="codectts-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CODECTTS_CACHE"], True)


@pytest.fixture(autouse=True)
def one_thread():
    """Every test runs on one thread: the tiny models here are overhead-bound, and on a loaded 2-core machine a
    second thread only contends (small FFTs and convolutions get up to ~100x slower). Set again afterwards, so
    a command run in-process with --threads cannot leak into the next module's fixtures."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sine():
    """sine(freq, sr, seconds, amp) -> a float32 sine wave."""

    def make(freq=440.0, sr=22050, seconds=0.5, amp=0.5):
        t = np.arange(int(sr * seconds)) / sr
        return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return make


@pytest.fixture(scope="session")
def tiny_mel_codec():
    """tiny_mel_codec(codebook_size) -> a random mel-RVQ codec: 4 codebooks, 80 mels at 22.05 kHz, fixed stats."""
    from codectts.codecs.mel_rvq import MelRVQCodec, preset

    def make(codebook_size: int = 64) -> MelRVQCodec:
        codec = MelRVQCodec(preset("tiny", codebook_size=codebook_size))
        codec.set_stats(torch.full((80,), -5.0), torch.full((80,), 2.0))
        return codec

    return make


@pytest.fixture(scope="session")
def tiny_mimi_dir(tmp_path_factory):
    """A tiny random Mimi (1.7 M parameters; 8 codebooks of 256) saved locally, so Mimi code paths never download
    anything. transformers initialises the codebooks to zeros; random ones make every code reachable."""
    pytest.importorskip("transformers")
    from transformers import MimiConfig, MimiModel

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
    return path

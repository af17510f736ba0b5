"""Lower-precision Talker weights at load time (CPU speed: a decode step reads every weight once).

`weights="bfloat16"` casts the Talker's parameters and buffers to bfloat16, so its activations and KV
cache follow; sampling still runs in float32 (`sample_logits` casts). The duration model, codec and
vocoder stay float32. Set by voice.json "weights" or `Synthesizer.load(weights=...)`; speed and dev WER
against float32 are in docs/speed.md. int8 dynamic quantisation in torch (torch.ao.quantize_dynamic)
measured no faster than float32 for these batch-1 steps there, and torch deprecates it; int8 weights
are offered through ONNX Runtime instead (`backend="onnx-int8"`, infer/onnx_talker.py).
"""
from __future__ import annotations

from codectts.errors import ConfigError

WEIGHTS = ("float32", "bfloat16")  # torch dtype names; torch-free, so voice.json checks need no torch


def check_weights(weights: str | None, where: str = "weights") -> str:
    """'float32' (default for None) or 'bfloat16'; anything else is a ConfigError."""
    weights = "float32" if weights is None else weights
    if weights not in WEIGHTS:
        raise ConfigError(f"{where}: {weights!r} is not one of {list(WEIGHTS)}")
    return weights


def with_weights(model, weights: str | None):
    """The torch module with its floating-point parameters and buffers in `weights` precision (in place)."""
    import torch

    return model.to(getattr(torch, check_weights(weights)))

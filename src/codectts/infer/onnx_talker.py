"""An aligned Talker's decode step on ONNX Runtime (opt-in backend "onnx"; speed in docs/speed.md).

At batch 1 a frame of the eager Talker is ~1,700 torch op calls (norms, RoPE, reshapes, SDPA, 46
matrix-vector products, sampling: torch.profiler on joe); ONNX Runtime runs the step as one graph call. The graph
(`StepGraph`) is the Talker's own modules written with plain tensor ops and a fixed-size KV cache:

- the cache is a ring of W slots per layer ([L, B, H_kv, W, Dh], keys already rotated): position p is
  written to slot p % W and attention masks the slots not yet written. W = min(window, frames) holds
  exactly the keys the eager cache's window attends to (RoPE makes only distances matter, and the
  softmax does not care about slot order), so the step computes the eager step's values (up to
  float rounding: on joe the codes were identical, greedy and sampled, docs/speed.md);
- inputs are the previous frame's codes and this frame's conditioning; the output "state" is the
  hidden state h and codebook 0's logits side by side ([B, D + C]: the generator passes it on to
  `codebook_logits` untouched, so concurrent generations share nothing); each depth head (codebooks
  1..K-1) is a graph of its own taking h and the codes chosen so far, so every code is still drawn
  by `models.sampling.sample_logits` in Python.

The text encoder and length regulation run once per sentence and stay eager. Graphs are exported
lazily into the cache folder (`fileio.cache_root()/onnx`), named by a hash of the weights and the
export code, written atomically; a file that does not load is exported again.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from codectts.errors import CheckpointError, ConfigError
from codectts.fileio import atomic_write_bytes, cache_root
from codectts.models.blocks import apply_rope
from codectts.models.talker import Talker

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the graphs change: cached files from older code are then not reused
OPSET = 17
INSTALL_HINT = "pip install 'codectts[onnx]'"


class StepGraph(nn.Module):
    """One aligned decode step in export-friendly ops: (frame [B, K], cond [B, 1, D], pos [], k/v caches
    [L, B, H_kv, W, Dh]) -> (state [B, D + C]: h and codebook 0's logits, new k/v caches)."""

    def __init__(self, talker: Talker):
        super().__init__()
        self.talker = talker

    def forward(self, frame, cond, pos, k_cache, v_cache):
        m = self.talker
        tr, cfg = m.transformer, m.transformer.cfg
        b = frame.shape[0]
        hd, hq, hkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        x = cond
        for k in range(m.cfg.n_codebooks):
            x = x + m.code_emb[k](frame[:, k : k + 1])
        slots = torch.arange(k_cache.shape[3], device=frame.device)
        written = (slots <= pos)[None, None, None, :]  # [1, 1, 1, W]: slots holding positions <= pos
        here = (slots == pos % k_cache.shape[3])[:, None]  # [W, 1]: this position's slot
        cos, sin = tr.cos[pos][None], tr.sin[pos][None]  # [1, Dh/2]
        new_k, new_v = [], []
        for i, layer in enumerate(tr.layers):
            a = layer.attn
            hn = layer.attn_norm(x)
            q = apply_rope(a.wq(hn).view(b, 1, hq, hd).transpose(1, 2), cos, sin)  # [B, H, 1, Dh]
            kk = apply_rope(a.wk(hn).view(b, 1, hkv, hd).transpose(1, 2), cos, sin)
            vv = a.wv(hn).view(b, 1, hkv, hd).transpose(1, 2)
            kc = torch.where(here, kk, k_cache[i])  # [B, H_kv, W, Dh]
            vc = torch.where(here, vv, v_cache[i])
            new_k.append(kc)
            new_v.append(vc)
            qg = q.reshape(b, hkv, hq // hkv, hd)  # query head j uses kv head j // (H / H_kv), as SDPA's GQA
            scores = torch.matmul(qg, kc.transpose(2, 3)) * (1.0 / math.sqrt(hd))  # [B, H_kv, G, W]
            scores = scores.masked_fill(~written, float("-inf"))
            out = torch.matmul(scores.softmax(-1), vc).reshape(b, 1, hq * hd)
            x = x + a.wo(out)
            x = x + layer.ffn(layer.ffn_norm(x))
        h = tr.norm(x)[:, 0]
        return torch.cat([h, m.heads[0](h)], -1), torch.stack(new_k), torch.stack(new_v)


class DepthGraph(nn.Module):
    """Depth head k >= 1: (h [B, D], codes chosen so far [B, k]) -> codebook k's logits [B, C]."""

    def __init__(self, talker: Talker, k: int):
        super().__init__()
        self.talker, self.k = talker, k

    def forward(self, h, prev):
        return self.talker.codebook_logits(h, self.k, prev.unbind(1))


def weights_hash(talker: Talker) -> str:
    """Names the exported files: the weights, the config and the export code's version."""
    h = hashlib.sha256(f"v{EXPORT_VERSION} torch {torch.__version__} {sorted(vars(talker.cfg).items())}".encode())
    for name, t in sorted(talker.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def _export(module: nn.Module, args: tuple, names: list[str], outputs: list[str], dynamic: dict) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of one needing onnxscript
        torch.onnx.export(module, args, f, input_names=names, output_names=outputs, dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False)
    return f.getvalue()


def export_graphs(talker: Talker) -> dict[str, bytes]:
    """ONNX bytes of the step and depth graphs of a float32 aligned Talker (tiny example inputs)."""
    cfg, tc = talker.cfg, talker.transformer.cfg
    b, w = 1, 4
    frame = torch.zeros(b, cfg.n_codebooks, dtype=torch.long)
    cond = torch.zeros(b, 1, cfg.dim)
    cache = torch.zeros(tc.n_layers, b, tc.n_kv_heads, w, tc.head_dim)
    batch = {0: "batch"}
    step = _export(StepGraph(talker), (frame, cond, torch.tensor(0), cache, cache),
                   ["frame", "cond", "pos", "k_cache", "v_cache"], ["state", "k_out", "v_out"],
                   {"frame": batch, "cond": batch, "k_cache": {1: "batch", 3: "slots"},
                    "v_cache": {1: "batch", 3: "slots"}, "state": batch,
                    "k_out": {1: "batch", 3: "slots"}, "v_out": {1: "batch", 3: "slots"}})
    graphs = {"step": step}
    for k in range(1, cfg.n_codebooks):
        graphs[f"depth{k}"] = _export(DepthGraph(talker, k), (torch.zeros(b, cfg.dim), frame[:, :k]), ["h", "prev"],
                                      ["logits"], {"h": batch, "prev": batch, "logits": batch})
    return graphs


def quantize_int8(graph: bytes) -> bytes:
    """Dynamic int8 quantisation of a graph's weight MatMuls (onnxruntime.quantization: int8 weights,
    activations quantised per call); attention's activation-by-activation MatMuls stay float32."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q.onnx"
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # it logs a hint to the root logger on every call
        try:
            quantize_dynamic(onnx.load_from_string(graph), out, op_types_to_quantize=["MatMul"],
                             weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
        return out.read_bytes()


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _require(module: str, why: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"backend 'onnx' needs {module} {why}, and it is not installed ({INSTALL_HINT})") from None


class OnnxTalker:
    """Stands in for a Talker in `TalkerGenerator.aligned`: the same `frame_conditioning`, `make_caches`,
    `prefill`, `step` and `codebook_logits`, with the step and heads on ONNX Runtime."""

    def __init__(self, talker: Talker, cache_dir: str | Path | None = None, threads: int | None = None,
                 int8: bool = False):
        _require("onnxruntime", "to run")
        if talker.cfg.conditioning != "aligned" or not talker.cfg.depth_heads or talker.cfg.n_codebooks < 2:
            raise ConfigError("backend 'onnx' runs aligned talkers with depth heads only")
        if talker.heads[0].weight.dtype != torch.float32:
            raise ConfigError("backend 'onnx' exports float32 weights; use weights='float32' with it")
        self.talker, self.cfg = talker.eval(), talker.cfg
        folder = Path(cache_dir) if cache_dir is not None else cache_root() / "onnx"
        key = weights_hash(talker)
        threads = threads or torch.get_num_threads()
        self.int8 = int8  # the step's weight MatMuls in int8 (the depth heads stay float32)
        names = ["step"] + [f"depth{k}" for k in range(1, talker.cfg.n_codebooks)]
        paths = {name: folder / f"talker-{key}-{name}{'-int8' if int8 and name == 'step' else ''}.onnx"
                 for name in names}
        self.sessions = self._load_or_export(paths, threads)

    def _load_or_export(self, paths: dict[str, Path], threads: int) -> dict:
        if all(p.exists() for p in paths.values()):
            try:
                return {name: _session(p, threads) for name, p in paths.items()}
            except Exception as e:  # unreadable (a half-copied or corrupt file): export again
                log.warning("exporting the Talker's ONNX graphs again: %s", str(e)[:120])
        log.info("exporting the Talker's ONNX graphs to %s", next(iter(paths.values())).parent)
        _require("onnx", "to export the graphs")
        with torch.no_grad():
            graphs = export_graphs(self.talker)
        if self.int8:
            graphs["step"] = quantize_int8(graphs["step"])
        try:
            for name, p in paths.items():
                atomic_write_bytes(p, graphs[name])
        except OSError as e:
            raise ConfigError(f"cannot write the exported Talker graphs to {p.parent} ({e}); "
                              "set CODECTTS_CACHE to a writable folder") from e
        try:
            return {name: _session(p, threads) for name, p in paths.items()}
        except Exception as e:
            raise CheckpointError(f"the exported Talker graphs do not load in onnxruntime: {str(e)[:200]}") from e

    # ---- the Talker interface TalkerGenerator.aligned uses ----------------------------------------
    def eval(self) -> OnnxTalker:
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def frame_conditioning(self, *args, **kwargs):
        return self.talker.frame_conditioning(*args, **kwargs)

    def make_caches(self, batch: int, max_len: int, device=None, window: int | None = None) -> dict:
        """A ring of min(window, max_len) slots per layer (see the module docstring)."""
        tc = self.talker.transformer.cfg
        w = min(window or max_len, max_len)
        shape = (tc.n_layers, batch, tc.n_kv_heads, w, tc.head_dim)
        return {"k": np.zeros(shape, np.float32), "v": np.zeros(shape, np.float32), "pos": 0}

    def _run(self, frame: torch.Tensor, caches: dict, cond: torch.Tensor) -> torch.Tensor:
        """-> the state [B, D + C] (h, codebook 0's logits) that `codebook_logits` reads."""
        state, caches["k"], caches["v"] = self.sessions["step"].run(None, {
            "frame": frame.numpy(), "cond": cond.float().contiguous().numpy(),
            "pos": np.array(caches["pos"], np.int64), "k_cache": caches["k"], "v_cache": caches["v"]})
        caches["pos"] += 1
        return torch.from_numpy(state)

    def prefill(self, caches: dict, text=None, speaker=None, cond: torch.Tensor | None = None, batch: int = 1):
        return self._run(self.talker.bos(cond.shape[0], "cpu")[:, :, 0], caches, cond[:, :1])

    def step(self, frame: torch.Tensor, caches: dict, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(frame, caches, cond)

    def codebook_logits(self, state: torch.Tensor, k: int, prev) -> torch.Tensor:
        d = self.cfg.dim
        if k == 0:
            return state[:, d:]
        codes = torch.stack(list(prev[:k]), 1).numpy()
        (logits,) = self.sessions[f"depth{k}"].run(None, {"h": state[:, :d].contiguous().numpy(), "prev": codes})
        return torch.from_numpy(logits)

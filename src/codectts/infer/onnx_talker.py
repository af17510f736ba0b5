"""An aligned Talker's frame on ONNX Runtime: decode step, depth heads and sampling in one graph call
(backends "onnx" and "onnx-int8"; speed in docs/speed.md).

At batch 1 a frame of the eager Talker is ~1,700 torch op calls (norms, RoPE, reshapes, SDPA, 46
matrix-vector products, four sampler calls: torch.profiler on joe), so it is bound by per-call
overhead, not arithmetic. `FrameGraph` is the Talker's own modules written with plain tensor ops and a
fixed-size KV cache, run as one graph per frame:

- the cache is a ring of W slots per layer ([L, B, H_kv, W, Dh], keys already rotated): position p is
  written to slot p % W and attention masks the slots not yet written. W = min(window, frames) holds
  exactly the keys the eager cache's window attends to (RoPE makes only distances matter, and the
  softmax does not care about slot order). The graph returns only this position's keys and values;
  the caller writes them into its ring, so the cache is never copied;
- the graph samples too, as `models.sampling.sample_logits` does: temperature, top-k, then nucleus, then
  one draw per row as argmax(p / q) with q ~ Exp(1), which is how `torch.multinomial` draws one sample.
  The q are drawn in Python from the request's generator in the eager sampler's order (frame by frame,
  codebook by codebook; a block of frames per call, never past the last), so both backends give the
  same codes from the same seed (up to float rounding
  near a tie: identical on joe, docs/speed.md). Greedy is top-1 with q = 1.

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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from codectts.errors import CheckpointError, ConfigError, GenerationError
from codectts.fileio import atomic_write_bytes, cache_root
from codectts.models.sampling import SamplingConfig
from codectts.models.talker import Talker

log = logging.getLogger(__name__)

EXPORT_VERSION = 2  # bump when the graph changes: cached files from older code are then not reused
OPSET = 17
INSTALL_HINT = "pip install onnx onnxruntime"
NO_NUCLEUS = 2.0  # a top_p no cumulative mass reaches: sampling without the nucleus cut
NOISE_BLOCK = 32  # frames whose draws are made in one call (never past the sentence's last frame)


def draw(logits: torch.Tensor, noise: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
         top_p: torch.Tensor) -> torch.Tensor:
    """`sample_logits` in export-friendly ops: logits [B, C], noise q [B, C] (Exp(1), or 1 for greedy),
    0-d temperature / top_k / top_p -> ids [B]. The argmax of p / q is the draw `torch.multinomial` makes.

    Only the top k are sorted (TopK), so the nucleus is cut among them: the eager sampler's cut exactly,
    except when logits tie with the k-th one and a nucleus is asked for too (float logits do not tie).
    """
    x = logits / temperature
    ranked, order = torch.topk(x, top_k, dim=-1)  # [B, k], descending
    probs = ranked.softmax(-1)
    beyond = (probs.cumsum(-1) - probs) >= top_p  # the mass before this token already reaches top_p
    beyond = torch.cat([torch.zeros_like(beyond[:, :1]), beyond[:, 1:]], -1)  # the most likely token stays
    drop = (x < ranked[:, -1:]).scatter(-1, order, beyond)  # outside the top-k (ties with the k-th stay)
    return (x.masked_fill(drop, float("-inf")).softmax(-1) / noise).argmax(-1)


class FrameGraph(nn.Module):
    """One aligned frame: (previous frame [B, K], cond [B, 1, D], pos [], k/v caches [L, B, H_kv, W, Dh],
    noise [K, B, C], temperature [], top_k [], top_p []) -> (codes [B, K], this position's k/v
    [L, B, H_kv, 1, Dh]).

    Written for few graph nodes, since at batch 1 ONNX Runtime's time goes to per-node overhead: RoPE
    is x * cos + (x @ R) * sin with R the fixed pair-rotation matrix (the eager `apply_rope`'s values
    exactly: R only permutes and negates), and the cache is read, never copied: attention scores the
    ring's other slots and this position's key side by side.
    """

    def __init__(self, talker: Talker):
        super().__init__()
        self.talker = talker
        hd = talker.transformer.cfg.head_dim
        rot = torch.zeros(hd, hd)
        rot[1::2, 0::2] = -torch.eye(hd // 2)  # (x @ rot)[2i] = -x[2i + 1]
        rot[0::2, 1::2] = torch.eye(hd // 2)  # (x @ rot)[2i + 1] = x[2i]
        tr = talker.transformer
        self.register_buffer("rot", rot, persistent=False)
        self.register_buffer("cos", tr.cos.repeat_interleave(2, -1), persistent=False)  # [max_len, Dh]
        self.register_buffer("sin", tr.sin.repeat_interleave(2, -1), persistent=False)

    def forward(self, frame, cond, pos, k_cache, v_cache, noise, temperature, top_k, top_p):
        m = self.talker
        tr, cfg = m.transformer, m.transformer.cfg
        b = frame.shape[0]
        hd, hq, hkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        x = cond
        for k in range(m.cfg.n_codebooks):
            x = x + m.code_emb[k](frame[:, k : k + 1])
        slots = torch.arange(k_cache.shape[3], device=frame.device)
        # the ring's slots holding earlier positions of the window: written, and not the slot this position
        # takes over (which holds position pos - W once the ring is full)
        older = ((slots < pos) & (slots != pos % k_cache.shape[3]))[None, None, None, :]  # [1, 1, 1, W]
        cos, sin = self.cos[pos], self.sin[pos]  # [Dh]
        scale = 1.0 / math.sqrt(hd)
        new_k, new_v = [], []
        for i, layer in enumerate(tr.layers):
            a = layer.attn
            hn = layer.attn_norm(x)
            q = a.wq(hn).view(b, hkv, hq // hkv, hd)  # query head j uses kv head j // (H / H_kv), as SDPA's GQA
            kk = a.wk(hn).view(b, hkv, 1, hd)
            q = q * cos + torch.matmul(q, self.rot) * sin
            kk = kk * cos + torch.matmul(kk, self.rot) * sin
            vv = a.wv(hn).view(b, hkv, 1, hd)
            new_k.append(kk)
            new_v.append(vv)
            old = torch.matmul(q, k_cache[i].transpose(2, 3)).masked_fill(~older, float("-inf"))  # [B, H_kv, G, W]
            here = (q * kk).sum(-1, keepdim=True)  # [B, H_kv, G, 1]
            p = (torch.cat([old, here], -1) * scale).softmax(-1)
            out = torch.matmul(p[..., :-1], v_cache[i]) + p[..., -1:] * vv
            x = x + a.wo(out.reshape(b, 1, hq * hd))
            x = x + layer.ffn(layer.ffn_norm(x))
        h = tr.norm(x)[:, 0]
        codes: list[torch.Tensor] = []
        for k in range(m.cfg.n_codebooks):  # depth heads see the codes already drawn for this frame
            codes.append(draw(m.codebook_logits(h, k, codes), noise[k], temperature, top_k, top_p))
        broken = (torch.isnan(h) | torch.isinf(h)).any(-1, keepdim=True)  # -> codes -1: the caller raises
        return torch.stack(codes, 1).masked_fill(broken, -1), torch.stack(new_k), torch.stack(new_v)


def weights_hash(talker: Talker) -> str:
    """Names the exported file: the weights, the config and the export code's version."""
    h = hashlib.sha256(f"v{EXPORT_VERSION} torch {torch.__version__} {sorted(vars(talker.cfg).items())}".encode())
    for name, t in sorted(talker.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def export_frame_graph(talker: Talker) -> bytes:
    """ONNX bytes of the frame graph of a float32 aligned Talker (traced on tiny example inputs)."""
    cfg, tc = talker.cfg, talker.transformer.cfg
    b, w = 1, 4
    cache = torch.zeros(tc.n_layers, b, tc.n_kv_heads, w, tc.head_dim)
    args = (torch.zeros(b, cfg.n_codebooks, dtype=torch.long), torch.zeros(b, 1, cfg.dim), torch.tensor(0), cache,
            cache, torch.ones(cfg.n_codebooks, b, cfg.n_classes), torch.tensor(1.0), torch.tensor(2),
            torch.tensor(NO_NUCLEUS))
    names = ["frame", "cond", "pos", "k_cache", "v_cache", "noise", "temperature", "top_k", "top_p"]
    outputs = ["codes", "k_new", "v_new"]
    ring, row = {1: "batch", 3: "slots"}, {1: "batch"}
    dynamic = {"frame": {0: "batch"}, "cond": {0: "batch"}, "k_cache": ring, "v_cache": ring, "noise": row,
               "codes": {0: "batch"}, "k_new": row, "v_new": row}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of one needing onnxscript
        torch.onnx.export(FrameGraph(talker), args, f, input_names=names, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    return f.getvalue()


def quantize_int8(graph: bytes) -> bytes:
    """Dynamic int8 quantisation of the transformer's weight MatMuls (onnxruntime.quantization: int8
    weights, activations quantised per call). The codebook heads, which the draws read directly, and
    attention's activation-by-activation MatMuls stay float32."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load_from_string(graph)
    heads = [n.name for n in model.graph.node if n.op_type == "MatMul" and "/heads." in n.name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "q.onnx"
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # it logs a hint to the root logger on every call
        try:
            quantize_dynamic(model, out, op_types_to_quantize=["MatMul"], nodes_to_exclude=heads,
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
        raise ConfigError(f"the onnx backends need {module} {why}, and it is not installed ({INSTALL_HINT}); "
                          "backend='torch' runs without it") from None


class OnnxTalker:
    """Stands in for a Talker in `TalkerGenerator.aligned`: the eager `frame_conditioning`, and
    `aligned_frames`, which runs the frame loop on ONNX Runtime."""

    def __init__(self, talker: Talker, cache_dir: str | Path | None = None, threads: int = 1, int8: bool = False):
        _require("onnxruntime", "to run")
        if talker.cfg.conditioning != "aligned" or not talker.cfg.depth_heads or talker.cfg.n_codebooks < 2:
            raise ConfigError("the onnx backends run aligned talkers with depth heads only")
        if talker.heads[0].weight.dtype != torch.float32:
            raise ConfigError("the onnx backends export float32 weights; use weights='float32' with them")
        self.talker, self.cfg = talker.eval(), talker.cfg
        self.int8 = int8  # the transformer's weight MatMuls in int8 (the codebook heads stay float32)
        folder = Path(cache_dir) if cache_dir is not None else cache_root() / "onnx"
        self.path = folder / f"talker-{weights_hash(talker)}-frame{'-int8' if int8 else ''}.onnx"
        # one thread: a frame is ~400 small nodes, and a second thread only adds hand-overs (on joe, 2 threads
        # took 0.77 ms per frame against 1 thread's 0.70); torch's threads serve the vocoder meanwhile
        self.session = self._load_or_export(threads)

    def _load_or_export(self, threads: int):
        if self.path.exists():
            try:
                return _session(self.path, threads)
            except Exception as e:  # unreadable (a half-copied or corrupt file): export again
                log.warning("exporting the Talker's ONNX graph again: %s", str(e)[:120])
        log.info("exporting the Talker's ONNX graph to %s", self.path)
        _require("onnx", "to export the graph")
        with torch.no_grad():
            graph = export_frame_graph(self.talker)
        if self.int8:
            graph = quantize_int8(graph)
        try:
            atomic_write_bytes(self.path, graph)
        except OSError as e:
            raise ConfigError(f"cannot write the exported Talker graph to {self.path.parent} ({e}); "
                              "set CODECTTS_CACHE to a writable folder") from e
        try:
            return _session(self.path, threads)
        except Exception as e:
            raise CheckpointError(f"the exported Talker graph does not load in onnxruntime: {str(e)[:200]}") from e

    # ---- what TalkerGenerator.aligned uses ------------------------------------------------------
    def eval(self) -> OnnxTalker:
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def frame_conditioning(self, *args, **kwargs):
        return self.talker.frame_conditioning(*args, **kwargs)

    def aligned_frames(self, cond: torch.Tensor, sampling: SamplingConfig | None,
                       generator: torch.Generator | None, window: int | None = None) -> Iterator[torch.Tensor]:
        """Frames [B, K] for conditioning cond [B, n, D], one graph call each (the eager loop's codes)."""
        cfg, tc = self.cfg, self.talker.transformer.cfg
        b, n = cond.shape[:2]
        w = min(window or n, n)
        k_ring = np.zeros((tc.n_layers, b, tc.n_kv_heads, w, tc.head_dim), np.float32)
        v_ring = np.zeros_like(k_ring)
        s = sampling or SamplingConfig()
        greedy = s.temperature == 0
        feed = {"temperature": np.array(1.0 if greedy else s.temperature, np.float32),
                "top_k": np.array(1 if greedy else min(s.top_k or cfg.n_classes, cfg.n_classes), np.int64),
                "top_p": np.array(NO_NUCLEUS if greedy or s.top_p is None else s.top_p, np.float32),
                "k_cache": k_ring, "v_cache": v_ring}
        shape = (cfg.n_codebooks, b, cfg.n_classes)
        noise = np.ones((NOISE_BLOCK, *shape), np.float32)
        frame = self.talker.bos(b, "cpu")[:, :, 0].numpy()
        cond = cond.float().numpy()
        for t in range(n):
            if not greedy and t % NOISE_BLOCK == 0:  # the eager draws, a block of frames at a time
                noise = torch.empty(min(NOISE_BLOCK, n - t), *shape).exponential_(generator=generator).numpy()
            feed.update(frame=frame, cond=cond[:, t : t + 1], pos=np.array(t, np.int64), noise=noise[t % NOISE_BLOCK])
            frame, k_new, v_new = self.session.run(None, feed)
            k_ring[:, :, :, t % w] = k_new[:, :, :, 0]
            v_ring[:, :, :, t % w] = v_new[:, :, :, 0]
            if (frame < 0).any() or (frame >= cfg.n_classes).any():
                raise GenerationError("cannot sample: the model produced non-finite logits")
            yield torch.from_numpy(frame)

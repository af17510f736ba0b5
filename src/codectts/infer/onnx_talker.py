"""An aligned Talker's frame on ONNX Runtime: decode step, depth heads and sampling in one graph call
(backends "onnx" and "onnx-int8"; speed in docs/speed.md).

At batch 1 a frame of the eager Talker is ~1,700 torch op calls (norms, RoPE, reshapes, SDPA, 46
matrix-vector products, four sampler calls: torch.profiler on joe), so it is bound by per-call
overhead, not arithmetic. `FrameGraph` is the Talker's own modules written with plain tensor ops and a
fixed-size KV cache, run as one graph per frame:

- the cache is a ring of W slots per layer and row ([L, B, H_kv, W, Dh], keys already rotated):
  position p is written to slot p % W, and attention masks the slots not yet written or outside the
  row's window. W = min(window, frames) holds exactly the keys the eager cache's window attends to
  (RoPE makes only distances matter, and the softmax does not care about slot order). The graph
  returns only this position's keys and values; the caller writes them into its ring, so the cache
  is never copied;
- the graph samples too, as `models.sampling.sample_logits` does: temperature, top-k, then nucleus, then
  one draw per row as argmax(p / q) with q ~ Exp(1), which is how `torch.multinomial` draws one sample.
  The q are drawn in Python from the request's generator in the eager sampler's order (frame by frame,
  codebook by codebook; a block of frames per call, never past the last), so both backends give the
  same codes from the same seed (up to float rounding near a tie: identical on joe, docs/speed.md).
  Greedy is top-1 with q = 1;
- every row has its own position, window and sampling options, so `BatchedOnnxTalker` can step
  concurrent sentences together (the server, when it allows more generations than there are cores).

The text encoder and length regulation run once per sentence and stay eager. Graphs are exported
lazily into the cache folder (`fileio.cache_root()/onnx`), named by a hash of the weights and the
export code, written atomically; a file that does not load is exported again.
"""
from __future__ import annotations

import contextlib
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
from codectts.infer.batch import BatchedTalker
from codectts.models.sampling import SamplingConfig
from codectts.models.talker import Talker

log = logging.getLogger(__name__)

EXPORT_VERSION = 3  # bump when the graph changes: cached files from older code are then not reused
OPSET = 17
INSTALL_HINT = "pip install onnx onnxruntime"
NO_NUCLEUS = 2.0  # a top_p no cumulative mass reaches: sampling without the nucleus cut
NOISE_BLOCK = 32  # frames whose draws are made in one call (never past the sentence's last frame)
CACHE_LIMIT_BYTES = 1 << 30  # exported graphs kept in the cache folder, least recently used pruned first


def draw(logits: torch.Tensor, noise: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
         top_p: torch.Tensor) -> torch.Tensor:
    """`sample_logits` in export-friendly ops, with each row's own options: logits [B, C], noise q [B, C]
    (Exp(1), or 1 for greedy), temperature [B, 1], top_k [B], top_p [B, 1] -> ids [B]. The argmax of
    p / q is the draw `torch.multinomial` makes.

    Only the top k are sorted (TopK), so the nucleus is cut among them: the eager sampler's cut exactly,
    except when logits tie with the k-th one and a nucleus is asked for too (float logits do not tie).
    """
    x = logits / temperature
    ranked, order = torch.topk(x, top_k.max(), dim=-1)  # [B, k_max], descending
    kth = ranked.gather(-1, (top_k - 1)[:, None])  # [B, 1]: this row's k-th logit
    outside = ranked < kth  # ranks beyond the row's k (ties with the k-th stay, as in filter_logits)
    probs = ranked.masked_fill(outside, float("-inf")).softmax(-1)
    beyond = (probs.cumsum(-1) - probs) >= top_p  # the mass before this token already reaches top_p
    beyond = torch.cat([torch.zeros_like(beyond[:, :1]), beyond[:, 1:]], -1)  # the most likely token stays
    drop = (x < kth).scatter(-1, order, outside | beyond)
    return (x.masked_fill(drop, float("-inf")).softmax(-1) / noise).argmax(-1)


class FrameGraph(nn.Module):
    """One aligned frame for B rows, each at its own position: (previous frames [B, K], cond [B, 1, D],
    pos [B], window [B], k/v rings [L, B, H_kv, W, Dh], noise [K, B, C], temperature [B, 1], top_k [B],
    top_p [B, 1]) -> (codes [B, K], the rows' new keys/values [L, B, H_kv, 1, Dh]).

    Row r's position p lives in ring slot p % W; a slot d = (p - slot) mod W positions back is attended
    when 0 < d <= p (written) and d < window[r] (inside the row's attention window).

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

    def forward(self, frame, cond, pos, window, k_cache, v_cache, noise, temperature, top_k, top_p):
        m = self.talker
        tr, cfg = m.transformer, m.transformer.cfg
        b = frame.shape[0]
        hd, hq, hkv = cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        x = cond
        for k in range(m.cfg.n_codebooks):
            x = x + m.code_emb[k](frame[:, k : k + 1])
        w = k_cache.shape[3]
        back = (pos[:, None] + w - torch.arange(w, device=frame.device)[None, :]) % w  # [B, W]: positions back
        older = ((back > 0) & (back <= pos[:, None]) & (back < window[:, None]))[:, None, None, :]  # [B, 1, 1, W]
        cos, sin = self.cos[pos][:, None, None, :], self.sin[pos][:, None, None, :]  # [B, 1, 1, Dh]
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
    b, w = 2, 4  # two rows, so that tracing cannot take the batch for a broadcast dimension
    cache = torch.zeros(tc.n_layers, b, tc.n_kv_heads, w, tc.head_dim)
    args = (torch.zeros(b, cfg.n_codebooks, dtype=torch.long), torch.zeros(b, 1, cfg.dim),
            torch.zeros(b, dtype=torch.long), torch.full((b,), w), cache, cache,
            torch.ones(cfg.n_codebooks, b, cfg.n_classes), torch.ones(b, 1), torch.full((b,), 2),
            torch.full((b, 1), NO_NUCLEUS))
    names = ["frame", "cond", "pos", "window", "k_cache", "v_cache", "noise", "temperature", "top_k", "top_p"]
    outputs = ["codes", "k_new", "v_new"]
    first, second = {0: "batch"}, {1: "batch"}
    dynamic = {**{k: first for k in ("frame", "cond", "pos", "window", "temperature", "top_k", "top_p", "codes")},
               "k_cache": {1: "batch", 3: "slots"}, "v_cache": {1: "batch", 3: "slots"}, "noise": second,
               "k_new": second, "v_new": second}
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated in favour of one needing onnxscript
        # eval(): the exporter puts the module back in the mode it found it in, and a fresh wrapper is in
        # training mode, which would switch the Talker's dropout on for the rest of the process
        torch.onnx.export(FrameGraph(talker).eval(), args, f, input_names=names, output_names=outputs,
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


def prune(folder: Path, keep: Path, limit_bytes: int = CACHE_LIMIT_BYTES) -> None:
    """Delete the least recently used exported graphs until the folder holds at most `limit_bytes`
    (every checkpoint evaluated on an ONNX backend leaves one, 13-35 MB for joe); `keep` stays."""
    graphs = sorted(folder.glob("talker-*.onnx"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in graphs)
    for p in graphs:
        if total <= limit_bytes:
            break
        if p != keep:
            total -= p.stat().st_size
            p.unlink(missing_ok=True)


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


def draws(sampling: SamplingConfig | None, generator: torch.Generator | None, shape: tuple) -> np.ndarray:
    """The q of `draw` for frames of this shape [..., K, (B,) C]: Exp(1) from the generator in the eager
    sampler's order (frame by frame, codebook by codebook), or 1 for greedy (which draws nothing)."""
    if sampling is not None and sampling.temperature == 0:
        return np.ones(shape, np.float32)
    return torch.empty(shape).exponential_(generator=generator).numpy()


def non_finite() -> GenerationError:
    """What a row gets whose codes came back -1 (FrameGraph marks a non-finite state so)."""
    return GenerationError("cannot sample: the model produced non-finite logits")


def unsupported(talker: Talker) -> str | None:
    """Why the frame graph cannot run this Talker (None: it can); OnnxTalker refuses it, 'auto' keeps torch."""
    cfg = talker.cfg
    if cfg.conditioning != "aligned" or not cfg.depth_heads or cfg.n_codebooks < 2:
        return "the onnx backends run aligned talkers with depth heads only"
    if talker.heads[0].weight.dtype != torch.float32:
        return "the onnx backends export float32 weights; use weights='float32' with them"
    return None


class OnnxTalker:
    """Stands in for a Talker in `TalkerGenerator.aligned`: the eager `frame_conditioning`, and
    `aligned_frames`, which runs the frame loop on ONNX Runtime."""

    def __init__(self, talker: Talker, cache_dir: str | Path | None = None, threads: int = 1, int8: bool = False):
        _require("onnxruntime", "to run")
        if why := unsupported(talker):
            raise ConfigError(why)
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
                session = _session(self.path, threads)
            except Exception as e:  # unreadable (a half-copied or corrupt file): export again
                log.warning("exporting the Talker's ONNX graph again: %s", str(e)[:120])
            else:
                with contextlib.suppress(OSError):  # a read-only cache still serves its graphs
                    self.path.touch()  # recently used: the last to be pruned
                return session
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
        prune(self.path.parent, keep=self.path)
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

    def run(self, frames: np.ndarray, cond: np.ndarray, pos: np.ndarray, window: np.ndarray, rings: Rings,
            noise: np.ndarray, options: dict[str, np.ndarray]) -> np.ndarray:
        """One frame for B rows (graph inputs as in FrameGraph; `options` from `row_options`): writes the
        rows' new keys and values into their ring slots and returns the codes [B, K] (-1: non-finite)."""
        codes, k_new, v_new = self.session.run(None, {
            "frame": frames, "cond": cond, "pos": pos, "window": window, "k_cache": rings.k, "v_cache": rings.v,
            "noise": noise, **options})
        rings.write(pos, k_new, v_new)
        return codes

    def row_options(self, samplings: list[SamplingConfig | None]) -> dict[str, np.ndarray]:
        """temperature / top_k / top_p inputs for rows with these sampling options (greedy: top-1)."""
        n = self.cfg.n_classes
        opts = [s or SamplingConfig() for s in samplings]
        return {"temperature": np.array([[s.temperature or 1.0] for s in opts], np.float32),
                "top_k": np.array([1 if s.temperature == 0 else min(s.top_k or n, n) for s in opts], np.int64),
                "top_p": np.array([[NO_NUCLEUS if s.temperature == 0 or s.top_p is None else s.top_p]
                                   for s in opts], np.float32)}

    def aligned_frames(self, cond: torch.Tensor, sampling: SamplingConfig | None,
                       generator: torch.Generator | None, window: int | None = None) -> Iterator[torch.Tensor]:
        """Frames [B, K] for conditioning cond [B, n, D], one graph call each (the eager loop's codes)."""
        cfg = self.cfg
        b, n = cond.shape[:2]
        w = min(window or n, n)
        rings = Rings.empty(self.talker, b, w)
        options = self.row_options([sampling] * b)
        frame = self.talker.bos(b, "cpu")[:, :, 0].numpy()
        cond = cond.float().numpy()
        windows = np.full(b, w, np.int64)
        for t in range(n):
            if t % NOISE_BLOCK == 0:  # a block of frames' draws at a time
                noise = draws(sampling, generator, (min(NOISE_BLOCK, n - t), cfg.n_codebooks, b, cfg.n_classes))
            frame = self.run(frame, cond[:, t : t + 1], np.full(b, t, np.int64), windows, rings,
                             noise[t % NOISE_BLOCK], options)
            if (frame < 0).any():
                raise non_finite()
            yield torch.from_numpy(frame)


class Rings:
    """The KV rings of B rows, [L, B, H_kv, W, Dh] each: row r's position p in slot p % W."""

    def __init__(self, k: np.ndarray, v: np.ndarray):
        self.k, self.v = k, v

    @classmethod
    def empty(cls, talker: Talker, rows: int, slots: int) -> Rings:
        tc = talker.transformer.cfg
        k = np.zeros((tc.n_layers, rows, tc.n_kv_heads, slots, tc.head_dim), np.float32)
        return cls(k, np.zeros_like(k))

    @property
    def slots(self) -> int:
        return self.k.shape[3]

    def write(self, pos: np.ndarray, k_new: np.ndarray, v_new: np.ndarray) -> None:
        rows, slots = np.arange(len(pos)), pos % self.slots
        self.k[:, rows, :, slots] = k_new[:, :, :, 0].transpose(1, 0, 2, 3)  # advanced indices go first
        self.v[:, rows, :, slots] = v_new[:, :, :, 0].transpose(1, 0, 2, 3)


class BatchedOnnxTalker(BatchedTalker):
    """`BatchedTalker` (infer/batch.py: concurrent sentences share one step per frame) on the frame graph:
    each row keeps its position, window, sampling options and generator (its q drawn from it in the
    eager order), so a sentence gets the codes it gets alone. The rings hold exactly the active rows
    (the graph reads them in place; they are copied only when a sentence joins or leaves) and as many
    slots as the most demanding row needs, re-laid out when a row needs more."""

    def __init__(self, model: OnnxTalker, max_batch: int):
        super().__init__(model, max_batch)
        self.rings: Rings | None = None

    def _make_room(self, s) -> None:
        need = min(s.window or s.n, s.n)
        old, rows = self.rings, len(self._rows)
        slots = max(need, old.slots) if rows else need  # an idle batcher starts afresh
        new = Rings.empty(self.model.talker, rows + 1, slots)
        for r, x in enumerate(self._rows):  # each row's written positions, from its old slot to its new one
            held = np.arange(max(0, x.pos - old.slots), x.pos)
            new.k[:, r, :, held % slots] = old.k[:, r, :, held % old.slots]
            new.v[:, r, :, held % slots] = old.v[:, r, :, held % old.slots]
        self.rings = new

    def _drop_row(self, r: int, last: int) -> None:
        k, v = self.rings.k, self.rings.v
        if r != last:
            k[:, r], v[:, r] = k[:, last], v[:, last]
        self.rings = Rings(np.ascontiguousarray(k[:, :last]), np.ascontiguousarray(v[:, :last]))

    def _advance(self, rows) -> list[torch.Tensor | BaseException]:
        m, cfg = self.model, self.model.cfg
        bos = np.full(cfg.n_codebooks, cfg.bos_code, np.int64)
        frames = np.stack([s.frame.numpy() if s.frame is not None else bos for s in rows])
        cond = torch.stack([s.cond[s.pos] for s in rows])[:, None].float().numpy()
        pos = np.array([s.pos for s in rows], np.int64)
        window = np.array([s.window or s.n for s in rows], np.int64)
        noise = np.stack([draws(s.sampling, s.generator, (cfg.n_codebooks, cfg.n_classes)) for s in rows], 1)
        codes = m.run(frames, cond, pos, window, self.rings, noise, m.row_options([s.sampling for s in rows]))
        return [non_finite() if (c < 0).any() else torch.from_numpy(c) for c in codes]

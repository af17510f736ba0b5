"""Server throughput: N concurrent clients against `SpeechService` (the server's core) for a fixed time.

Each client sends dev sentences one after another (client c starts at sentence c * 7, so clients say
different things) through `SpeechService.prepare` + `synthesize` (whole file) or `stream`, exactly as
the HTTP routes do, in this process: no HTTP client competes for the 2 cores. The server is allowed
as many generations at once as there are clients. Reported per client count: aggregate audio seconds
per wall second (all audio finished in the window / the window), requests done, latency median and
p90, and time to the first encoded piece (median, p90) when streaming.

    nice -n 10 python benchmarks/serve_throughput.py --clients 1 2 4 8 --seconds 30 --out tp.json
    nice -n 10 python benchmarks/serve_throughput.py --clients 4 --stream --batch 8

A request still running when the window closes is waited for but not counted (its audio is not in the
figure; the wall time is the window), so short windows undercount slightly at high client counts.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, report  # noqa: E402

SENTENCE_STRIDE = 7


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def run_clients(service, texts: list[str], clients: int, seconds: float, stream: bool, fmt: str,
                      seed: int) -> dict:
    from codectts.serve.service import SpeechRequest

    done: list[tuple[float, float, float | None]] = []  # (audio s, latency s, first piece s)
    failures: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def client(c: int) -> None:
        i = c * SENTENCE_STRIDE
        while time.perf_counter() < deadline:
            text = texts[i % len(texts)]
            i += 1
            req = SpeechRequest(input=text, response_format=fmt, stream=stream, seed=seed)
            t0 = time.perf_counter()
            first = None
            try:
                job = service.prepare(req)
                if stream:
                    async for piece in await service.stream(job):
                        if piece and first is None:
                            first = time.perf_counter() - t0
                else:
                    await service.synthesize(job)
            except Exception as e:  # noqa: BLE001 - counted and shown, the run goes on
                failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
                continue
            end = time.perf_counter()
            if end <= deadline:
                done.append((job.log["audio_s"], end - t0, first))

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    tail = time.perf_counter() - t0 - seconds
    audio = sum(a for a, _, _ in done)
    lat = [x for _, x, _ in done]
    firsts = [f for _, _, f in done if f is not None]
    return {"clients": clients, "requests": len(done), "audio_s": round(audio, 2),
            "audio_s_per_wall_s": round(audio / seconds, 3), "latency_p50_s": pct(lat, 50),
            "latency_p90_s": pct(lat, 90), "first_piece_p50_s": pct(firsts, 50), "first_piece_p90_s": pct(firsts, 90),
            "tail_s": round(tail, 1), "failures": failures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voice", default=None, help="voice name or folder (default: the shipped voice)")
    p.add_argument("--backend", default="auto", help="Talker backend, as `codectts serve --backend`")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--seconds", type=float, default=30.0, help="window per client count")
    p.add_argument("--stream", action="store_true", help="streamed requests (measures the first piece)")
    p.add_argument("--format", default="pcm", help="response_format")
    p.add_argument("--batch", type=int, default=0,
                   help="batched decoding with at most this many sentences per step (0: off, as before)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the server's default is 1)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from codectts.eval.devset import dev_texts
    from codectts.infer import Synthesizer
    from codectts.serve.service import ServeConfig, SpeechService

    machine = machine_info()
    t0 = time.perf_counter()
    load = {"backend": args.backend}
    if args.batch:
        load["batch"] = args.batch
    synth = Synthesizer.load(args.voice, **load)
    load_s = time.perf_counter() - t0
    texts = dev_texts("sentences")
    synth.synthesize(texts[0], seed=args.seed)  # warm-up
    rows = []
    for n in args.clients:
        service = SpeechService({synth.name: synth}, ServeConfig(max_concurrent=n))
        try:
            row = asyncio.run(run_clients(service, texts, n, args.seconds, args.stream, args.format, args.seed))
        finally:
            service.close()
        print(row, file=sys.stderr, flush=True)
        rows.append(row)
    report({"benchmark": "serve_throughput", "voice": synth.name, "backend": args.backend, "batch": args.batch,
            "stream": args.stream, "format": args.format, "seconds_per_count": args.seconds,
            "load_s": round(load_s, 1), "rows": rows}, args.out, machine)


if __name__ == "__main__":
    main()

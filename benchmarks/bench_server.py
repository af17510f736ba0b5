"""Load benchmark for `codectts serve`: N concurrent clients on 127.0.0.1 for a bounded time.

Starts the server in a child process (a real voice, or the tone test double with `--double`),
drives it with asyncio + httpx, and prints JSON: requests/s, p50/p95 latency, time to first audio
byte when streaming, failures (non-200 other than 429), 429 refusals, and the server's resident
memory at start, after a warm-up request and at the end.

    python benchmarks/bench_server.py --clients 2 --seconds 30 --stream            # shipped voice
    python benchmarks/bench_server.py --double --clients 4 --seconds 10 --stream   # HTTP layer only
    python benchmarks/bench_server.py --url http://127.0.0.1:8000 --pid 1234       # a running server

The client shares the machine's cores with the server; on 2 cores keep --clients small.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

DEFAULT_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs back into the forest "
                "before the farmer wakes up.")
STARTUP_TIMEOUT_S = 300.0  # loading a voice can take a while on a busy 2-core machine
REQUEST_TIMEOUT_S = 300.0
HEALTH_POLL_S = 0.2
RSS_EVERY_S = 5.0
TESTS_DIR = Path(__file__).resolve().parents[1] / "tests"


@dataclass
class Sample:
    status: int
    latency_s: float
    first_byte_s: float | None
    bytes: int
    error: str | None = None


@dataclass
class Report:
    server: str
    clients: int
    seconds: float
    stream: bool
    response_format: str
    text_chars: int
    max_concurrent: int | None
    requests_ok: int = 0
    requests_per_s: float = 0.0
    failures: int = 0
    rejected_429: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    latency_max_s: float | None = None
    first_audio_p50_s: float | None = None
    first_audio_p95_s: float | None = None
    audio_bytes: int = 0
    rss_start_mb: float | None = None
    rss_after_warmup_mb: float | None = None
    rss_end_mb: float | None = None
    rss_peak_mb: float | None = None
    rss_timeline_mb: list = field(default_factory=list)  # [seconds into the run, MiB] every RSS_EVERY_S
    machine: dict = field(default_factory=dict)


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process (Linux /proc), in MiB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def serve_double(port: int, max_concurrent: int, chunk_delay_s: float) -> None:
    """Child-process mode: the tone test double from tests/ behind the real app."""
    import uvicorn

    sys.path.insert(0, str(TESTS_DIR))
    from serve_double import ToneSynthesizer

    from codectts.serve import create_app
    from codectts.serve.cli import UVICORN_LIMITS

    app = create_app(
        {"tone": ToneSynthesizer(chunk_delay_s=chunk_delay_s, record_calls=False)}, max_concurrent=max_concurrent
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", **UVICORN_LIMITS)


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    if args.double:
        cmd = [
            sys.executable,
            __file__,
            "--serve-double",
            "--port",
            str(port),
            "--max-concurrent",
            str(args.max_concurrent),
            "--double-delay",
            str(args.double_delay),
        ]
    else:
        cmd = [
            sys.executable,
            "-c",
            "from codectts.cli import run; run()",
            "serve",
            "--port",
            str(port),
            "--max-concurrent",
            str(args.max_concurrent),
        ]
        for v in args.voice or []:
            cmd += ["--voice", v]
    if not args.server_log:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with open(args.server_log, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen | None) -> dict:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode} before it was ready")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(HEALTH_POLL_S)
    raise SystemExit(f"server not ready after {STARTUP_TIMEOUT_S:g} s")


async def one_request(http: httpx.AsyncClient, body: dict) -> Sample:
    t0 = time.perf_counter()
    first, size = None, 0
    try:
        async with http.stream("POST", "/v1/audio/speech", json=body) as r:
            async for chunk in r.aiter_raw():
                if chunk and first is None:
                    first = time.perf_counter() - t0
                size += len(chunk)
            return Sample(r.status_code, time.perf_counter() - t0, first if r.status_code == 200 else None, size)
    except httpx.HTTPError as e:
        return Sample(0, time.perf_counter() - t0, None, size, error=type(e).__name__)


async def drive(
    url: str, args: argparse.Namespace, body: dict, pid: int | None, timeline: list
) -> tuple[list[Sample], float, float]:
    samples: list[Sample] = []
    peak = rss_mb(pid) or 0.0
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        deadline = time.perf_counter() + args.seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                s = await one_request(http, body)
                samples.append(s)
                if s.status == 429:  # honour the server's back-off, as a polite client would
                    await asyncio.sleep(args.retry_pause)

        async def watch_memory() -> None:
            nonlocal peak
            next_mark = time.perf_counter()
            while time.perf_counter() < deadline:
                now_mb = rss_mb(pid) or 0.0
                peak = max(peak, now_mb)
                if time.perf_counter() >= next_mark:
                    timeline.append([round(time.perf_counter() - t0, 1), now_mb])
                    next_mark += RSS_EVERY_S
                await asyncio.sleep(0.5)

        t0 = time.perf_counter()
        await asyncio.gather(watch_memory(), *(client() for _ in range(args.clients)))
        wall = time.perf_counter() - t0
    return samples, wall, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voice", action="append", help="voice for `codectts serve` (default: the shipped voice)")
    p.add_argument("--double", action="store_true", help="serve the tone test double (HTTP layer only, no model)")
    p.add_argument("--double-delay", type=float, default=0.0, help="seconds the double sleeps per 0.1 s chunk")
    p.add_argument("--url", help="benchmark a server that is already running (then --pid for its memory)")
    p.add_argument("--pid", type=int, help="pid of the --url server, for RSS")
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0, help="how long the clients keep sending")
    p.add_argument("--stream", action="store_true", help="request streamed audio (measures time to first byte)")
    p.add_argument("--format", default="pcm", help="response_format")
    p.add_argument("--text", default=DEFAULT_TEXT)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int, default=2, help="server limit (when this script starts it)")
    p.add_argument("--retry-pause", type=float, default=0.5, help="client pause after a 429")
    p.add_argument("--server-log", help="file for the started server's output")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--serve-double", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_double:
        serve_double(args.port, args.max_concurrent, args.double_delay)
        return

    proc, pid = None, args.pid
    if args.url:
        url = args.url.rstrip("/")
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(args, port)
        pid = proc.pid
    try:
        health = wait_healthy(url, proc)
        body = {
            "model": "codectts",
            "input": args.text,
            "voice": health["voices"][0],
            "response_format": args.format,
            "speed": args.speed,
            "stream": args.stream,
        }
        report = Report(
            server="tone test double (no model)" if args.double else f"codectts serve {health['voices']}",
            clients=args.clients,
            seconds=args.seconds,
            stream=args.stream,
            response_format=args.format,
            text_chars=len(args.text),
            max_concurrent=health.get("max_concurrent"),
        )
        report.rss_start_mb = rss_mb(pid)
        warm = asyncio.run(_warmup(url, body))
        if warm.status != 200:
            raise SystemExit(f"warm-up request failed with HTTP {warm.status} {warm.error or ''}")
        report.rss_after_warmup_mb = rss_mb(pid)
        samples, wall, peak = asyncio.run(drive(url, args, body, pid, report.rss_timeline_mb))
        report.rss_end_mb = rss_mb(pid)
        report.rss_peak_mb = peak or None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    ok = [s for s in samples if s.status == 200]
    report.requests_ok = len(ok)
    report.requests_per_s = round(len(ok) / wall, 3)
    report.rejected_429 = sum(s.status == 429 for s in samples)
    report.failures = len(samples) - len(ok) - report.rejected_429
    for s in samples:
        if s.status != 200:
            key = s.error or f"HTTP {s.status}"
            report.errors[key] = report.errors.get(key, 0) + 1
    lat = [s.latency_s for s in ok]
    report.latency_p50_s, report.latency_p95_s = percentile(lat, 50), percentile(lat, 95)
    report.latency_max_s = round(max(lat), 4) if lat else None
    if args.stream:
        ttfb = [s.first_byte_s for s in ok if s.first_byte_s is not None]
        report.first_audio_p50_s, report.first_audio_p95_s = percentile(ttfb, 50), percentile(ttfb, 95)
    report.audio_bytes = sum(s.bytes for s in ok)
    report.machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    text = json.dumps(asdict(report), indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


async def _warmup(url: str, body: dict) -> Sample:
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        return await one_request(http, body)


if __name__ == "__main__":
    main()

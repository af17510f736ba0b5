"""`codectts serve`: load voices, then run the HTTP server. Heavy imports wait for the command."""
from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from codectts.errors import ConfigError

LOOPBACK_NAMES = ("localhost",)
# Connection limits for uvicorn (its defaults leave idle connections and header sizes looser):
# an idle keep-alive connection is closed after 5 s, request headers are capped at 16 KiB, at most
# 64 connections are served at once (503 beyond), and Ctrl-C waits at most 5 s for open streams.
# Body size and body/send stalls are limited in the app itself (serve/middleware.py).
UVICORN_LIMITS = {"timeout_keep_alive": 5, "h11_max_incomplete_event_size": 16 * 1024, "limit_concurrency": 64,
                  "timeout_graceful_shutdown": 5}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses other machines cannot reach."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted, not the one of the moment the server
    started (a test runner or embedding app may have closed or replaced that one since)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_access_log() -> None:
    """Access records are JSON already: print them bare, one a line, and only once."""
    logger = logging.getLogger("codectts.serve.access")
    if not any(getattr(h, "_codectts_access", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._codectts_access = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def register(app: typer.Typer) -> None:
    """Add the top-level `serve` command to the `codectts` CLI."""

    @app.command("serve")
    def serve(
        voice: Annotated[list[str] | None, typer.Option(
            "--voice", help="Voice name or folder; repeat for several (first = default). "
                            "Default: the shipped voice.")] = None,
        host: Annotated[str, typer.Option(help="Address to bind. The server has no authentication: "
                                               "keep it on localhost unless you mean otherwise.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
        max_concurrent: Annotated[int, typer.Option(
            "--max-concurrent", min=1, help="Generations at once; more get 429 + Retry-After.")] = 2,
        max_input_chars: Annotated[int, typer.Option(
            "--max-input-chars", min=1, help="Longest input accepted (413 beyond).")] = 4096,
        timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds a request may take.")] = 120.0,
        max_audio_s: Annotated[float, typer.Option(
            "--max-audio-s", min=0.001, help="Longest speech one request may plan, in seconds (400 beyond, "
                                             "before any generation; keep it within what --timeout allows).")
        ] = 300.0,
        device: Annotated[str, typer.Option(help="Torch device for the voices (cpu, cuda).")] = "cpu",
        backend: Annotated[str, typer.Option(help="How Talker voices' frames run: 'auto' (the voice's choice on "
                                                  "a CPU, else torch), 'torch', 'onnx', 'onnx-int8' "
                                                  "(docs/speed.md).")] = "auto",
        batch: Annotated[bool, typer.Option(
            "--batch/--no-batch", help="Concurrent requests' sentences share decode steps (aligned Talker "
                                       "voices, every backend; same audio, more throughput).")] = True,
        threads: Annotated[int, typer.Option(min=1, help="CPU threads per generation (concurrent requests "
                                                          "already use the cores).")] = 1,
        allow_host: Annotated[list[str] | None, typer.Option(
            "--allow-host", help="A Host name to answer besides localhost and IP addresses (e.g. the "
                                 "machine's name on the LAN); repeat for several, '*' for any.")] = None,
        voice_alias: Annotated[list[str] | None, typer.Option(
            "--voice-alias", metavar="NAME=VOICE",
            help="Answer voice NAME with a loaded VOICE; repeat for several. OpenAI's voice names "
                 "(alloy, nova, ...) speak with the default voice unless given here.")] = None,
        clone: Annotated[list[str] | None, typer.Option(
            "--clone", metavar="NAME=CLIP",
            help="Serve voice NAME: the first loaded voice that clones, speaking as the speaker of CLIP (a "
                 "5-10 s wav; what it says in CLIP's .txt beside it); repeat for several.")] = None,
    ) -> None:
        """Serve voices over HTTP: OpenAI-compatible /v1/audio/speech, streaming, and a web page at /."""
        aliases = parse_aliases(voice_alias or [])
        import torch
        import uvicorn

        torch.set_num_threads(threads)

        from codectts.infer import Synthesizer
        from codectts.infer.synthesizer import Limits
        from codectts.serve.app import create_app
        from codectts.serve.service import ServeConfig

        log = logging.getLogger("codectts.serve")
        synthesizers = {}
        for spec in voice or [None]:
            synth = Synthesizer.load(spec, device=device, limits=Limits(max_audio_s=max_audio_s), backend=backend,
                                     batch=max_concurrent if batch else 0)
            if synth.name in synthesizers:
                raise ConfigError(f"--voice {spec}: a voice named {synth.name!r} is already loaded")
            synthesizers[synth.name] = synth
            log.info("loaded voice %s (%d Hz, backend %s%s)", synth.name, synth.sample_rate, synth.backend,
                     ", batched" if getattr(synth.engine, "batcher", None) else "")
        synthesizers.update(cloned_voices(parse_clones(clone or []), synthesizers))
        config = ServeConfig(max_input_chars=max_input_chars, max_concurrent=max_concurrent,
                             request_timeout_s=timeout, allowed_hosts=(host, *(allow_host or [])),
                             voice_aliases=aliases)
        app_ = create_app(synthesizers, config)
        if not is_loopback(host):
            log.warning("binding to %s: anyone who can reach this address can use the server", host)
        configure_access_log()
        uvicorn.run(app_, host=host, port=port, access_log=False, log_level="info", **UVICORN_LIMITS)


def parse_clones(specs: list[str]) -> dict[str, tuple[Path, str]]:
    """['ann=clips/ann.wav', ...] -> {'ann': (clip, its transcript from clips/ann.txt)}; ConfigError names
    a malformed spec, a missing clip or a missing transcript."""
    clones = {}
    for spec in specs:
        name, sep, clip = spec.partition("=")
        name, path = name.strip(), Path(clip.strip())
        if not sep or not name or not clip.strip():
            raise ConfigError(f"--clone {spec!r}: expected NAME=CLIP, e.g. ann=clips/ann.wav")
        if not path.is_file():
            raise ConfigError(f"--clone {spec!r}: no clip at {path}")
        text_file = path.with_suffix(".txt")
        text = text_file.read_text(encoding="utf-8").strip() if text_file.is_file() else ""
        if not text:
            raise ConfigError(f"--clone {spec!r}: put what is said in the clip in {text_file}")
        clones[name] = (path, text)
    return clones


def cloned_voices(clones: dict[str, tuple[Path, str]], synthesizers: dict) -> dict:
    """Served voices for `parse_clones`' clips, each the first loaded voice that clones, speaking as the
    clip's speaker (the reference is made once, here)."""
    from codectts.serve.service import ClonedVoice

    if not clones:
        return {}
    base = next((s for s in synthesizers.values() if getattr(getattr(s, "engine", None), "clones", False)), None)
    if base is None:
        raise ConfigError(f"--clone needs a loaded voice that clones (trm or csm voices trained on speaker "
                          f"vectors, interleaved csm voices); loaded: {', '.join(synthesizers)}")
    out = {}
    for name, (clip, text) in clones.items():
        if name in synthesizers or name in out:
            raise ConfigError(f"--clone {name}: a voice named {name!r} is already loaded")
        out[name] = ClonedVoice(name, base, base.reference(clip, text), clip.name)
    return out


def parse_aliases(specs: list[str]) -> dict[str, str]:
    """['nova=joe', ...] -> {'nova': 'joe'}; ConfigError names a malformed one."""
    aliases = {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise ConfigError(f"--voice-alias {spec!r}: expected NAME=VOICE, e.g. nova=joe")
        aliases[name.strip()] = target.strip()
    return aliases

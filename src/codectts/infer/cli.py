"""Top-level commands: `codectts say`, `codectts voices`, `codectts make-voice`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import typer

from codectts.models.sampling import SamplingConfig

DEFAULT_SAMPLING = SamplingConfig()  # torch-free: the one default, shown in --help

def _read_text(text: str | None, file: Path | None) -> str:
    from codectts.errors import TextError

    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise TextError(f"{file}: cannot read text ({e})") from None
    if text is None or text == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise TextError("no text: give it as an argument, with --file, or on standard input")
        return sys.stdin.read()
    return text


def play_wav(path: Path) -> None:
    from codectts.errors import AudioError

    for player in (["aplay", "-q"], ["paplay"], ["ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"]):
        if shutil.which(player[0]):
            if subprocess.run([*player, str(path)]).returncode == 0:
                return
    raise AudioError(
        "--play: no working audio player/device found (tried aplay, paplay, ffplay); the wav was written"
    )


def register(app: typer.Typer) -> None:
    @app.command("say")
    def say(
        text: str | None = typer.Argument(None, help="Text to speak ('-' or nothing: read standard input)."),
        out: Path = typer.Option(Path("out.wav"), "-o", "--out", help="Output wav ('-' = standard output)."),
        file: Path | None = typer.Option(None, "--file", "-f", help="Read the text from a UTF-8 file."),
        voice: str | None = typer.Option(None, help="Voice name or folder (default: the shipped voice)."),
        speed: float = typer.Option(1.0, help="Speaking rate (0.25-4; 1 = normal)."),
        temperature: float | None = typer.Option(None, help="Sampling temperature (0 = greedy; default: the voice's)."),
        top_k: int | None = typer.Option(None, help="Keep the k most likely codes (default: the voice's)."),
        top_p: float | None = typer.Option(None, help="Keep the smallest set of codes reaching this mass."),
        seed: int | None = typer.Option(None, help="Random seed (same seed + text = same audio)."),
        play: bool = typer.Option(False, help="Also play the audio when an audio device exists."),
        reference: Path | None = typer.Option(None, help="Clip whose voice to speak in (cloning voices)."),
        reference_text: str | None = typer.Option(None, help="What is said in --reference."),
        threads: int = typer.Option(
            0,
            min=0,
            help="CPU threads for torch. 0: one for a Talker on torch (its steps are too small to split), up to "
                 "4 with the ONNX backends (the Talker runs on one thread, the vocoder splits).",
        ),
        max_chars: int = typer.Option(20_000, help="Refuse text longer than this, before or after normalisation."),
        max_audio_s: float = typer.Option(1_200.0, help="Refuse text that plans more audio than this (seconds)."),
        backend: str = typer.Option("auto", help="How a Talker's frames run: 'auto' (the voice's choice on a CPU: "
                                                 "onnx, or onnx-int8 where measured; else torch), 'torch', 'onnx' "
                                                 "(ONNX Runtime: the torch audio, faster), 'onnx-int8' (int8 "
                                                 "weights, fastest). docs/speed.md."),
        vocoder: str | None = typer.Option(None, help="'griffinlim': use Griffin-Lim instead of the voice's trained "
                                                      "vocoder (the fallback; slower, more metallic)."),
    ):
        """Speak text into a wav file."""
        import numpy as np
        import torch

        torch.set_num_threads(threads or 1)

        from codectts.audio.io import save_wav, wav_bytes
        from codectts.infer import Synthesizer
        from codectts.infer.synthesizer import Limits

        content = _read_text(text, file)
        synth = Synthesizer.load(voice, limits=Limits(max_chars=max_chars, max_audio_s=max_audio_s), backend=backend,
                                 vocoder=vocoder)
        if not threads and synth.backend.startswith("onnx"):  # the vocoder splits (docs/speed.md)
            torch.set_num_threads(min(4, os.cpu_count() or 1))
        if (reference is None) != (reference_text is None):
            raise typer.BadParameter("--reference and --reference-text go together")
        ref = synth.reference(reference, reference_text) if reference is not None else None
        wav, sr = synth.synthesize(
            content, speed=speed, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, reference=ref
        )
        if str(out) == "-":
            sys.stdout.buffer.write(wav_bytes(wav, sr))
            sys.stdout.buffer.flush()
            return
        save_wav(out, wav, sr)
        typer.echo(
            f"wrote {out} ({len(wav) / sr:.2f} s, {sr} Hz, voice {synth.name}, peak {float(np.abs(wav).max()):.2f})",
            err=True,
        )
        if play:
            play_wav(out)

    @app.command("voices")
    def voices(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
        """List the voices this installation can load."""
        from codectts.infer import list_voices

        vs = list_voices()
        if as_json:
            typer.echo(json.dumps(vs, indent=1))
            return
        for v in vs:
            typer.echo(f"{v['name']:<12} {v['sample_rate'] or '?':>6} Hz  {v['model'] or '?':<8} {v['description']}")
        if not vs:
            typer.echo("no voices found")

    @app.command("make-voice")
    def make_voice(
        out: Path = typer.Option(..., help="Voice folder to write."),
        name: str = typer.Option(..., help="Voice name."),
        codec: Path = typer.Option(..., help="Codec part folder (a CSM voice: a Mimi folder, or a hub id in "
                                             "the local cache)."),
        talker: Path | None = typer.Option(None, help="Talker part (a run's best/ folder); or --trm, --csm."),
        trm: Path | None = typer.Option(None, help="TTS TRM part (`codectts train trm`'s best/ folder)."),
        csm: Path | None = typer.Option(None, help="CSM part (`codectts train csm`'s best/ folder)."),
        reference: Path | None = typer.Option(None, help="CSM voices: a clip of the voice's default speaker."),
        reference_text: str | None = typer.Option(None, help="What is said in --reference."),
        decode: str = typer.Option("codes", help="TRM voices: decode drawn 'codes', or 'soft' (the expected "
                                                 "codec latent of the model's distributions; mel codecs)."),
        duration: Path | None = typer.Option(None, help="Duration model part (aligned talkers; a TRM's length "
                                                        "source, replacing the part's own)."),
        vocoder: str = typer.Option("griffinlim",
                                    help="'griffinlim' or a trained vocoder part folder (HiFi-GAN or Vocos)."),
        description: str = typer.Option(""),
        temperature: float = typer.Option(DEFAULT_SAMPLING.temperature, help="The voice's default temperature."),
        top_k: int = typer.Option(DEFAULT_SAMPLING.top_k, help="The voice's default top-k."),
        half: bool = typer.Option(True, help="Store weights as fp16."),
        model_card: Path | None = typer.Option(None, help="MODEL_CARD.md to copy in."),
        context_frames: int | None = typer.Option(
            None,
            min=1,
            help="Aligned talkers: frames each step attends back to (below the longest "
            "training utterance keeps long text in distribution).",
        ),
        context_phonemes: int | None = typer.Option(
            None, min=1, help="Aligned talkers: phonemes the text encoder sees on each side."
        ),
    ):
        """Assemble trained parts into a voice folder (checked by loading it)."""
        from codectts.infer.packaging import build_voice

        build_voice(
            out,
            name=name,
            talker=talker,
            trm=trm,
            csm=csm,
            reference=reference,
            reference_text=reference_text,
            decode=decode,
            codec=codec,
            duration=duration,
            vocoder=vocoder,
            description=description,
            sampling={"temperature": temperature, "top_k": top_k},
            half=half,
            model_card=model_card,
            context={"frames": context_frames, "phonemes": context_phonemes},
        )
        typer.echo(f"wrote voice {name!r} to {out}")

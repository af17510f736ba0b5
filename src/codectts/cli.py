"""The `codectts` command. Sub-commands import their heavy modules lazily so `--help` is instant."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from codectts import __version__
from codectts.cli_util import optional_module
from codectts.errors import CodecTTSError

app = typer.Typer(help="codectts: train and run small codec-language-model text-to-speech.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
corpus_app = typer.Typer(help="Build and inspect training corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")


def _version(value: bool):
    if value:
        typer.echo(f"codectts {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@corpus_app.command("build")
def corpus_build(out: Path = typer.Option(..., "--out", help="Corpus folder to write (resumable)."),
                 hours: float = typer.Option(1.0, help="Hours of training audio to synthesize."),
                 seed: int = typer.Option(0, help="Seed for sentence order, speaking rate and speakers."),
                 speakers: int = typer.Option(1, help="Number of synthetic speakers (1 = the teacher only)."),
                 workers: int | None = typer.Option(None, help="Parallel teacher processes (default: CPU count)."),
                 text_file: Path | None = typer.Option(None, help="UTF-8 sentences, one a line (default: fortunes)."),
                 dev_size: int = typer.Option(100, help="Held-out sentences written to dev.jsonl."),
                 extra_text: str | None = typer.Option(
                     None, help="More training sentences once the text source is spoken: 'wordnet' (Debian's "
                     "wordnet-base usage examples) or a file, one sentence a line. Never in dev.")):
    """Speak sentences with the Piper teacher into an LJSpeech folder with alignments."""
    from codectts.data.corpus import build_corpus

    info = build_corpus(out, hours=hours, seed=seed, speakers=speakers, workers=workers, text_file=text_file,
                        dev_size=dev_size, extra_text=extra_text)
    typer.echo(json.dumps(info, indent=1))


@corpus_app.command("festival")
def corpus_festival(out: Path = typer.Option(..., "--out", help="LJSpeech folder to write (resumable)."),
                    voice: str = typer.Option("cmu_us_slt_arctic_hts", help="Festival voice (Debian festvox-*)."),
                    hours: float = typer.Option(1.0, help="Hours of audio to synthesize."),
                    seed: int = typer.Option(0, help="Seed for the sentence order."),
                    workers: int = typer.Option(1, help="Parallel festival processes."),
                    text_file: Path | None = typer.Option(None, help="Sentences, one a line (default: fortunes).")):
    """Speak the text source with a Festival voice: wavs/ + metadata.csv and Festival's segment timings."""
    from codectts.data.festival import build_festival_corpus

    typer.echo(json.dumps(build_festival_corpus(out, voice=voice, hours=hours, seed=seed, workers=workers,
                                                text_file=text_file), indent=1))


@corpus_app.command("stats")
def corpus_stats_cmd(folder: Path = typer.Argument(..., help="Corpus folder.")):
    """Hours, utterances, speakers, length percentiles and phoneme rates."""
    from codectts.data.corpus import corpus_stats

    typer.echo(json.dumps(corpus_stats(folder), indent=1))


@corpus_app.command("import")
def corpus_import(ljspeech: Path = typer.Option(..., "--ljspeech", help="LJSpeech folder: metadata.csv + wavs/."),
                  out: Path = typer.Option(..., "--out", help="Corpus folder to write."),
                  max_seconds: float = typer.Option(20.0, help="Reject clips longer than this after trimming."),
                  dev_size: int = typer.Option(
                      100, help="About this many held-out utterances (each id by a fixed hash; on average 5 % of "
                                "the rows at most).")):
    """Import your own recordings: resample, trim, phonemise; every rejected row listed in rejects.tsv."""
    from codectts.data.ljspeech import ImportConfig, import_ljspeech

    report = import_ljspeech(ljspeech, out, ImportConfig(max_seconds=max_seconds, dev_size=dev_size))
    typer.echo(json.dumps({k: v for k, v in report.items() if k not in ("warnings", "config")}, indent=1))


@corpus_app.command("merge")
def corpus_merge(sources: list[str] = typer.Argument(
                     ..., help="Corpus folders: PATH=SPEAKER makes a source one speaker; a bare PATH keeps its "
                              "speakers (a single-speaker one takes the folder's name)."),
                 out: Path = typer.Option(..., "--out", help="Merged corpus folder (manifests only; audio stays)."),
                 hours: float | None = typer.Option(None, help="Keep each speaker's leading train rows up to this "
                                                               "much audio.")):
    """Merge corpora into one multi-speaker corpus (for cloning): manifests only, audio stays in place."""
    from codectts.data.merge import merge_corpora

    typer.echo(json.dumps(merge_corpora(out, sources, hours=hours), indent=1))


@corpus_app.command("shift")
def corpus_shift(data: Path = typer.Option(..., "--data", help="Corpus folder to copy (e.g. from `corpus import`)."),
                 out: Path = typer.Option(..., "--out", help="New corpus folder (its own shifted wavs)."),
                 semitones: float = typer.Option(..., help="Pitch and formant shift, e.g. -2 or 1.5 (non-zero, "
                                                           "within an octave)."),
                 hours: float | None = typer.Option(None, help="Shift only the leading train rows up to this much "
                                                               "audio (dev rows: all)."),
                 progress: bool = typer.Option(True, help="Show a progress bar.")):
    """A pitch-shifted copy of a corpus (same rows, durations still valid): a new speaker for cloning."""
    from codectts.data.shift import shift_corpus

    typer.echo(json.dumps(shift_corpus(data, out, semitones, hours=hours, progress=progress), indent=1))


@app.command("align")
def align(data: Path = typer.Option(..., "--data", help="Corpus folder (e.g. from `corpus import`)."),
          aligner: Path | None = typer.Option(None, help="A trained aligner part (default: train one on DATA)."),
          max_minutes: float = typer.Option(20.0, help="Training time budget."),
          max_steps: int = typer.Option(4000, help="Training steps at most."),
          threads: int = typer.Option(1, help="torch threads (1 is fastest on a shared 2-core machine).")):
    """Learn per-phoneme durations from the data itself and write them into its manifests."""
    from codectts.train.aligner import align_corpus

    report = align_corpus(data, aligner=aligner, max_minutes=max_minutes, max_steps=max_steps, threads=threads)
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "excluded_list"}, indent=1))


# Sub-command groups live beside the code they drive; each module defines `app` (a typer.Typer).
SUBCOMMANDS = {"eval": "codectts.eval.cli", "codes": "codectts.codecs.cli"}
# Top-level commands (say, voices, serve...) register themselves on `app` via `register(app)`.
COMMAND_MODULES = ["codectts.infer.cli", "codectts.serve.cli"]


for _name, _mod in SUBCOMMANDS.items():
    if (_m := optional_module(_mod)) is not None:
        app.add_typer(_m.app, name=_name)
for _mod in COMMAND_MODULES:
    if (_m := optional_module(_mod)) is not None:
        _m.register(app)


def command():
    """The click command: the typer app plus the lazily-resolved `train` group."""
    from codectts.train.cli import train_group

    cmd = typer.main.get_command(app)
    cmd.add_command(train_group(), "train")
    return cmd


def run() -> None:
    """Entry point: CodecTTSError becomes one clear line and exit code 2."""
    try:
        command()(prog_name="codectts")
    except CodecTTSError as e:
        message = " ".join(str(e).split()) or type(e).__name__  # one line, even when a wrapped error had several
        typer.secho(f"error: {message}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()

"""`codectts codes ...`: pre-tokenize corpora with a codec."""
from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Encode corpora into code caches (the --codes of the acoustic models).",
                  no_args_is_help=True)


@app.command("extract")
def extract(codec: str = typer.Option(..., help="Codec part folder (mel RVQ) or 'mimi:PATH_OR_HUB_ID'."),
            data: Path = typer.Option(..., help="Corpus folder (manifest.jsonl/dev.jsonl or metadata.csv)."),
            out: Path = typer.Option(..., help="Code cache folder to write (resumable)."),
            device: str = typer.Option("cpu")):
    """Encode every utterance once; teacher alignments are re-timed to the codec frame rate."""
    from codectts.codecs.extract import extract_codes
    from codectts.codecs.registry import load_codec

    if codec.startswith("mimi:"):
        spec = {"type": "mimi", "path": codec[5:]}
    else:
        spec = {"type": "mel_rvq", "path": str(Path(codec).resolve())}
    model = load_codec(spec, device=device)
    counts = extract_codes(model, data, out, codec_spec=spec)
    typer.echo(json.dumps({"out": str(out), **counts}))


@app.command("speaker-vectors")
def speaker_vectors(codes: Path = typer.Option(..., help="Code cache folder (codectts codes extract)."),
                    data: Path | None = typer.Option(None, help="Corpus folder (default: the cache's source)."),
                    progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Speaker vector (resemblyzer d-vector) of every utterance's audio, beside its codes: what `train trm
    --speaker-vectors` conditions on, so the voice can clone a reference clip (needs the eval extra)."""
    from codectts.data.speaker_vectors import extract_speaker_vectors

    typer.echo(json.dumps({"codes": str(codes), **extract_speaker_vectors(codes, data, progress=progress)}))

"""`codectts eval ...`: intelligibility (asr, tts), naturalness (DNSMOS), speaker similarity, codec metrics.

Heavy imports (faster-whisper, torch, resemblyzer) stay inside the commands so `codectts --help` is instant.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from codectts.errors import ConfigError, DataError

app = typer.Typer(help="Measure intelligibility (Whisper WER/CER), speaker similarity and codec quality.",
                  no_args_is_help=True)

ASR_MODEL_HELP = "A faster-whisper model folder (default: the bundled Whisper base of the eval extra)."
DNSMOS_HELP = "Rate naturalness with DNSMOS P.835/P.808 (read beside the teacher's and ground truth's figures)."


def _write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        from codectts.fileio import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        typer.echo(f"wrote {path}")


def _transcriber(asr_model: Path | None, beam_size: int):
    from codectts.eval.asr import Transcriber, TranscriberConfig

    return Transcriber(TranscriberConfig(model_dir=str(asr_model) if asr_model else None, beam_size=beam_size))


def _print_utterances(records: list[dict]) -> None:
    for r in records:
        mos = f"\tOVRL {r['dnsmos']['ovrl']:.2f}" if r.get("dnsmos") else ""
        typer.echo(f"{r['id']}\tWER {r['wer']:.3f}\tCER {r['cer']:.3f}{mos}\t{r['ref_norm']}\t=> {r['hyp_norm']}")


def _naturalness(enabled: bool):
    if not enabled:
        return None
    from codectts.eval.naturalness import default_dnsmos

    return default_dnsmos()


def _print_summary(s: dict) -> None:
    parts = [f"n {s['n']}", f"WER {s['wer']:.4f}", f"CER {s['cer']:.4f}", f"audio {s['durations']['total_s']:.1f} s"]
    if s.get("rtf") is not None:
        parts.append(f"RTF {s['rtf']:.4f}")
    if s.get("asr_s_per_audio_s") is not None:
        parts.append(f"ASR {s['asr_s_per_audio_s']:.3f} s/s")
    if s.get("failures"):
        parts.append(f"failures {s['failures']}")
    if s.get("dnsmos"):
        from codectts.eval.naturalness import format_dnsmos

        parts.append(format_dnsmos(s["dnsmos"]))
    typer.echo("summary: " + ", ".join(parts))


def _folder_items(folder: Path, texts_file: Path | None):
    """wav + same-name .txt in a folder, or the folder's wavs (sorted by name) paired with lines of --texts."""
    from codectts.eval.devset import read_lines
    from codectts.eval.intelligibility import pair_texts_and_wavs

    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    wavs = sorted(folder.glob("*.wav"))
    if texts_file is not None:
        return pair_texts_and_wavs(read_lines(texts_file), wavs)
    txts = {p.stem for p in folder.glob("*.txt")}
    missing_txt = [p.name for p in wavs if p.stem not in txts]
    missing_wav = sorted(txts - {p.stem for p in wavs})
    if missing_txt or missing_wav:
        raise DataError(f"{folder}: {len(wavs)} wav(s) and {len(txts)} txt(s) do not pair up; wavs without text: "
                        f"{missing_txt[:5]}, texts without wav: {missing_wav[:5]}")
    texts = [(folder / f"{p.stem}.txt").read_text(encoding="utf-8").strip() for p in wavs]
    return pair_texts_and_wavs(texts, wavs)


@app.command("asr")
def asr_cmd(
    manifest: Annotated[Path | None, typer.Option(help="JSONL manifest, or a corpus folder (see --split).")] = None,
    split: Annotated[str, typer.Option(help="Split of a corpus folder: dev (dev.jsonl) or train.")] = "dev",
    wavs: Annotated[Path | None, typer.Option(help="Folder of NAME.wav + NAME.txt pairs.")] = None,
    texts: Annotated[Path | None, typer.Option(help="With --wavs: one text per line for the sorted wavs.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N utterances.")] = None,
    asr_model: Annotated[Path | None, typer.Option(help=ASR_MODEL_HELP)] = None,
    beam_size: Annotated[int, typer.Option(min=1, help="Whisper beam size (1 = greedy).")] = 1,
    dnsmos: Annotated[bool, typer.Option(help=DNSMOS_HELP)] = True,
    out: Annotated[Path | None, typer.Option(help="Write per-utterance and summary JSON here.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the summary.")] = False,
):
    """WER/CER and DNSMOS of existing audio against its text (ground truth, or any voice's saved output)."""
    from codectts.eval.intelligibility import AudioItem, evaluate_files

    if (manifest is None) == (wavs is None):
        raise ConfigError("give exactly one of --manifest or --wavs")
    if texts is not None and wavs is None:
        raise ConfigError("--texts pairs with --wavs only")
    if manifest is not None:
        from codectts.data.manifest import read_corpus

        utts, root = read_corpus(manifest, split=split)
        items = [AudioItem(u.id, u.text, u.audio_path(root)) for u in utts]
    else:
        items = _folder_items(wavs, texts)
    items = items[:limit] if limit else items
    if not items:
        raise DataError(f"{manifest or wavs}: no utterances")
    result = evaluate_files(items, _transcriber(asr_model, beam_size), naturalness=_naturalness(dnsmos))
    if not quiet:
        _print_utterances(result["utterances"])
    _print_summary(result["summary"])
    _write_json(out, {"source": str(manifest or wavs), **result})


@app.command("tts")
def tts_cmd(
    voice: Annotated[str | None, typer.Option(help="Voice name or folder (default: the shipped voice).")] = None,
    teacher: Annotated[bool, typer.Option(help="Evaluate the Piper teacher instead.")] = False,
    dev_set: Annotated[str, typer.Option("--set", help="sentences (100) or paragraphs (5).")] = "sentences",
    texts: Annotated[Path | None, typer.Option(help="Own texts, one per line (instead of --set).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N texts.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed of text i is seed + i.")] = 0,
    device: Annotated[str, typer.Option(help="Device for the voice (cpu, cuda).")] = "cpu",
    save_wavs: Annotated[Path | None, typer.Option(help="Also save each synthesized wav in this folder.")] = None,
    asr_model: Annotated[Path | None, typer.Option(help=ASR_MODEL_HELP)] = None,
    beam_size: Annotated[int, typer.Option(min=1, help="Whisper beam size (1 = greedy).")] = 1,
    dnsmos: Annotated[bool, typer.Option(help=DNSMOS_HELP)] = True,
    out: Annotated[Path | None, typer.Option(help="Write per-utterance and summary JSON here.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the summary.")] = False,
):
    """Synthesize the dev set with a voice, transcribe it with Whisper: WER/CER, DNSMOS, RTF, duration stats."""
    from codectts.eval.devset import dev_texts, read_lines
    from codectts.eval.intelligibility import evaluate_voice

    if teacher and voice is not None:
        raise ConfigError("give --voice or --teacher, not both")
    lines = read_lines(texts) if texts is not None else dev_texts(dev_set)
    lines = lines[:limit] if limit else lines
    if teacher:
        from codectts.eval.teacher import TeacherVoice

        synth = TeacherVoice()
    else:
        from codectts.infer import Synthesizer

        synth = Synthesizer.load(voice, device=device)
    transcriber = _transcriber(asr_model, beam_size)
    result = evaluate_voice(synth, lines, transcriber, seed=seed, save_dir=save_wavs,
                            naturalness=_naturalness(dnsmos))
    if not quiet:
        _print_utterances(result["utterances"])
    _print_summary(result["summary"])
    _write_json(out, {"texts": str(texts) if texts else f"codectts dev {dev_set}", **result})


def _expand_wavs(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.wav")) if p.is_dir() else [p])
    if not out:
        raise DataError("no wavs given (files or folders of *.wav)")
    return out


@app.command("speaker")
def speaker_cmd(
    reference: Annotated[list[Path], typer.Option(help="Reference wav(s) of the target speaker (repeatable).")],
    wavs: Annotated[list[Path], typer.Argument(help="Wavs (or folders of wavs) to score.")],
    out: Annotated[Path | None, typer.Option(help="Write the scores as JSON here.")] = None,
):
    """Cosine similarity of each wav's speaker embedding to the reference (mean of the reference embeddings)."""
    import numpy as np

    from codectts.audio.io import load_audio
    from codectts.eval.speaker import default_encoder, similarity

    enc = default_encoder()
    ref = np.mean([enc.embed(*load_audio(p)) for p in reference], axis=0)
    rows = [{"audio": str(p), "similarity": similarity(ref, enc.embed(*load_audio(p)))} for p in _expand_wavs(wavs)]
    for r in rows:
        typer.echo(f"{r['similarity']:.4f}\t{r['audio']}")
    sims = [r["similarity"] for r in rows]
    summary = {"n": len(rows), "mean": float(np.mean(sims)), "min": float(np.min(sims)), "max": float(np.max(sims))}
    typer.echo(f"summary: n {summary['n']}, mean {summary['mean']:.4f}, min {summary['min']:.4f}, "
               f"max {summary['max']:.4f}")
    _write_json(out, {"reference": [str(p) for p in reference], "utterances": rows, "summary": summary})


@app.command("speaker-eer")
def speaker_eer_cmd(
    manifest: Annotated[Path, typer.Argument(help="JSONL manifest or corpus folder with a `speaker` field.")],
    split: Annotated[str, typer.Option(help="Split of a corpus folder: train or dev.")] = "train",
    per_speaker: Annotated[int, typer.Option(min=2, help="Utterances per speaker (the first N).")] = 5,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON here.")] = None,
):
    """Equal error rate of speaker embeddings across the manifest's speakers (0 = separated, 0.5 = chance)."""
    from codectts.audio.io import load_audio
    from codectts.data.manifest import read_corpus
    from codectts.eval.speaker import speaker_eer

    utts, root = read_corpus(manifest, split=split)
    by_spk: dict[str, list] = {}
    for u in utts:
        if len(by_spk.setdefault(u.speaker, [])) < per_speaker:
            by_spk[u.speaker].append(u)
    items = [(spk, *load_audio(u.audio_path(root))) for spk, us in by_spk.items() for u in us]
    res = speaker_eer(items).to_dict()
    typer.echo(json.dumps(res, indent=1))
    _write_json(out, {"manifest": str(manifest), **res})


@app.command("compare")
def compare_cmd(
    reference: Annotated[Path, typer.Argument(help="Reference wav (e.g. the original).")],
    test: Annotated[Path, typer.Argument(help="Test wav (e.g. the codec's reconstruction).")],
    dnsmos: Annotated[bool, typer.Option(help=DNSMOS_HELP)] = True,
    out: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.")] = None,
):
    """Log-mel L1/MSE, multi-resolution STFT, SI-SDR, PESQ-wb and STOI of a (reference, test) pair; DNSMOS of each."""
    from codectts.audio.io import load_audio
    from codectts.eval.metrics import compare

    ref, sr = load_audio(reference)
    tst, _ = load_audio(test, sr=sr)  # resampled to the reference's rate when they differ
    res = compare(ref, tst, sr)
    scorer = _naturalness(dnsmos)
    if scorer is not None:
        res.update(dnsmos_reference=scorer.score(ref, sr), dnsmos_test=scorer.score(tst, sr))
    typer.echo(json.dumps(res, indent=1))
    _write_json(out, {"reference": str(reference), "test": str(test), **res})

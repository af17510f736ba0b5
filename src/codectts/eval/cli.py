"""`codectts eval ...`: intelligibility (asr, tts), naturalness (DNSMOS), speaker similarity, codec metrics.

Heavy imports (faster-whisper, torch, resemblyzer) stay inside the commands so `codectts --help` is instant.
"""
from __future__ import annotations

import json
from dataclasses import replace
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
    if len(s.get("seeds", [])) > 1:
        w = s["wer_spread"]
        parts[1] += f" (mean of {len(s['seeds'])} seeds, {w['min']:.4f}-{w['max']:.4f})"
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


def folder_items(folder: Path, texts_file: Path | None):
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
        items = folder_items(wavs, texts)
    items = items[:limit] if limit else items
    if not items:
        raise DataError(f"{manifest or wavs}: no utterances")
    result = evaluate_files(items, _transcriber(asr_model, beam_size), naturalness=_naturalness(dnsmos))
    if not quiet:
        _print_utterances(result["utterances"])
    _print_summary(result["summary"])
    _write_json(out, {"source": str(manifest or wavs), **result})


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers (e.g. 0,1,2), got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    return seeds


def _baseline(source: str, lines: list[str], transcriber, naturalness=None) -> tuple[dict, dict[str, str]]:
    """The teacher run now on the same texts ("teacher"), or a saved `eval tts --out` JSON of them: its
    summary and its transcript of each text (the first seed's, when it was saved with several)."""
    from codectts.eval.asr import wer_cer
    from codectts.eval.naturalness import dnsmos_summary
    from codectts.eval.positions import position_scores
    from codectts.text.normalize import normalize_for_wer

    if source == "teacher":
        from codectts.eval.intelligibility import evaluate_voice
        from codectts.eval.teacher import TeacherVoice

        utts = evaluate_voice(TeacherVoice(), lines, transcriber, naturalness=naturalness)["utterances"]
    else:
        try:
            utts = json.loads(Path(source).read_text(encoding="utf-8"))["utterances"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"--baseline {source}: not a saved `eval tts --out` JSON ({e})") from None
        seen = list(dict.fromkeys(u["text"] for u in utts))
        if seen != lines:
            raise DataError(f"--baseline {source}: its {len(seen)} text(s) are not the {len(lines)} being evaluated")
    # rescored with today's normaliser, so a JSON saved by an older codectts compares fairly
    refs, hyps = [u["text"] for u in utts], [u["hypothesis"] for u in utts]
    out = {"source": source, **wer_cer(refs, hyps),
           "positions": position_scores([normalize_for_wer(t) for t in refs], [normalize_for_wer(t) for t in hyps])}
    if (mos := dnsmos_summary(utts)) is not None:
        out["dnsmos"] = mos
    hyp_by_text: dict[str, str] = {}
    for u in utts:
        hyp_by_text.setdefault(u["text"], u["hypothesis"])
    return out, hyp_by_text


def _against_baseline(utts: list[dict], base_hyps: dict[str, str]) -> dict:
    """The voice's WER minus the baseline's, paired sentence by sentence (each seed's run of a text beside
    the baseline's transcript of it), with its 95 % bootstrap interval (eval.asr.paired_wer_bootstrap)."""
    from codectts.eval.asr import paired_wer_bootstrap

    refs = [u["text"] for u in utts]
    return paired_wer_bootstrap(refs, [base_hyps[t] for t in refs], [u["hypothesis"] for u in utts])


@app.command("tts")
def tts_cmd(
    voice: Annotated[str | None, typer.Option(help="Voice name or folder (default: the shipped voice).")] = None,
    teacher: Annotated[bool, typer.Option(help="Evaluate the Piper teacher instead.")] = False,
    dev_set: Annotated[str, typer.Option("--set", help="sentences (100) or paragraphs (5).")] = "sentences",
    texts: Annotated[Path | None, typer.Option(help="Own texts, one per line (instead of --set).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N texts.")] = None,
    seeds: Annotated[str, typer.Option(help="Sampling seeds, comma-separated (0,1,2: three runs, WER as their "
                                            "mean and spread); text i of seed s gets seed s + i.")] = "0",
    temperature: Annotated[float | None, typer.Option(min=0, help="Sampling temperature (0 = greedy; default: "
                                                                   "the voice's).")] = None,
    top_k: Annotated[int | None, typer.Option(min=1, help="Top-k sampling (default: the voice's).")] = None,
    baseline: Annotated[str | None, typer.Option(help="Report beside a baseline on the same texts: 'teacher' "
                                                      "(run now) or a saved `eval tts --out` JSON.")] = None,
    device: Annotated[str, typer.Option(help="Device for the voice (cpu, cuda).")] = "cpu",
    backend: Annotated[str, typer.Option(
        help="Talker backend: auto, torch, onnx or onnx-int8 (docs/speed.md).")] = "auto",
    vocoder: Annotated[str | None, typer.Option(help="'griffinlim' instead of the voice's trained vocoder "
                                                    "(the same codes: a vocoder A/B).")] = None,
    save_wavs: Annotated[Path | None, typer.Option(help="Also save each synthesized wav in this folder "
                                                        "(seed<S>/ sub-folders with several seeds).")] = None,
    asr_model: Annotated[Path | None, typer.Option(help=ASR_MODEL_HELP)] = None,
    beam_size: Annotated[int, typer.Option(min=1, help="Whisper beam size (1 = greedy).")] = 1,
    dnsmos: Annotated[bool, typer.Option(help=DNSMOS_HELP)] = True,
    out: Annotated[Path | None, typer.Option(help="Write per-utterance and summary JSON here.")] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the summary.")] = False,
):
    """Synthesize the dev set with a voice, transcribe it with Whisper: WER/CER (with where in the
    sentence the errors fall), DNSMOS, RTF, duration stats; over several seeds as mean and spread."""
    from codectts.eval.devset import dev_texts, read_lines
    from codectts.eval.intelligibility import evaluate_voice_seeds
    from codectts.eval.naturalness import format_dnsmos
    from codectts.eval.positions import format_positions

    if teacher and voice is not None:
        raise ConfigError("give --voice or --teacher, not both")
    if teacher and (temperature is not None or top_k is not None):
        raise ConfigError("--temperature and --top-k set a voice's sampling; the teacher has none")
    seed_list = _seeds(seeds)
    lines = read_lines(texts) if texts is not None else dev_texts(dev_set)
    lines = lines[:limit] if limit else lines
    if teacher:
        from codectts.eval.teacher import TeacherVoice

        synth = TeacherVoice()
    else:
        from codectts.infer import Synthesizer

        synth = Synthesizer.load(voice, device=device, backend=backend, vocoder=vocoder)
        chosen = {"temperature": temperature, "top_k": top_k}
        synth.default_sampling = replace(synth.default_sampling, **{k: v for k, v in chosen.items() if v is not None})
    transcriber = _transcriber(asr_model, beam_size)
    scorer = _naturalness(dnsmos)
    result = evaluate_voice_seeds(synth, lines, transcriber, seeds=seed_list, save_dir=save_wavs, naturalness=scorer)
    s = result["summary"]
    if not teacher:
        s["sampling"] = vars(synth.default_sampling)
        s["backend"] = synth.backend  # 'auto' resolved: the voice's numbers depend on it (docs/speed.md)
    if not quiet:
        _print_utterances(result["utterances"])
    _print_summary(s)
    columns = {synth.name: s["positions"]}
    if len(seed_list) > 1:
        typer.echo("seeds: " + ", ".join(f"{p['seed']}: WER {p['wer']:.4f} CER {p['cer']:.4f}" for p in s["per_seed"])
                   + f"; WER std {s['wer_spread']['std']:.4f}")
    if baseline is not None:
        base, base_hyps = _baseline(baseline, lines, transcriber, scorer)
        base["voice_minus_baseline"] = diff = _against_baseline(result["utterances"], base_hyps)
        result["baseline"] = base
        name = "teacher" if baseline == "teacher" else Path(baseline).stem
        columns[name] = base["positions"]
        lo, hi = diff["ci95"]
        typer.echo(f"{name}: WER {base['wer']:.4f}, CER {base['cer']:.4f}; ratio WER "
                   f"{s['wer'] / base['wer'] if base['wer'] else float('inf'):.2f}x, CER "
                   f"{s['cer'] / base['cer'] if base['cer'] else float('inf'):.2f}x"
                   + (f"; {format_dnsmos(base['dnsmos'])}" if base.get("dnsmos") else ""))
        typer.echo(f"WER voice - {name}: {diff['diff']:+.4f}, 95 % interval [{lo:+.4f}, {hi:+.4f}] (paired "
                   f"bootstrap over sentences; voice worse in {diff['p_b_worse']:.0%} of resamples)")
    for line in format_positions(columns):
        typer.echo(line)
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


@app.command("roundtrip")
def roundtrip_cmd(
    out: Annotated[Path, typer.Option(help="Folder for the resynthesised wavs (same names) and roundtrip.json.")],
    voice: Annotated[str | None, typer.Option(help="Voice whose codec + vocoder to use (name or folder).")] = None,
    codec: Annotated[Path | None, typer.Option(help="Instead of --voice: a codec part folder.")] = None,
    vocoder: Annotated[str | None, typer.Option(
        help="Instead of --voice: 'griffinlim' or a vocoder part folder (alone: vocoder on the input's mel).")] = None,
    wavs: Annotated[Path | None, typer.Option(help="Folder of input wavs (NAME.txt beside them gives texts).")] = None,
    texts: Annotated[Path | None, typer.Option(help="With --wavs: one text per line for the sorted wavs.")] = None,
    manifest: Annotated[Path | None, typer.Option(help="Instead of --wavs: JSONL manifest or corpus folder.")] = None,
    split: Annotated[str, typer.Option(help="Split of a corpus folder: dev (dev.jsonl) or train.")] = "dev",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N inputs.")] = None,
    asr: Annotated[bool, typer.Option(help="WER/CER (Whisper) when texts are known.")] = True,
    dnsmos: Annotated[bool, typer.Option(help=DNSMOS_HELP)] = True,
    reference: Annotated[bool, typer.Option(help="Also score the inputs (ground-truth rows).")] = True,
    asr_model: Annotated[Path | None, typer.Option(help=ASR_MODEL_HELP)] = None,
    device: Annotated[str, typer.Option(help="Device for codec and vocoder.")] = "cpu",
    quiet: Annotated[bool, typer.Option(help="Print only the summary.")] = False,
):
    """Resynthesise wavs through a codec + vocoder: PESQ/STOI vs the input, DNSMOS, WER/CER (judges codecs)."""
    from codectts.eval.roundtrip import Item, chain_from_parts, chain_from_voice, run_roundtrip

    if voice is not None and (codec is not None or vocoder is not None):
        raise ConfigError("give --voice, or --codec and/or --vocoder, not both")
    if (wavs is None) == (manifest is None):
        raise ConfigError("give exactly one of --wavs or --manifest")
    if texts is not None and wavs is None:
        raise ConfigError("--texts pairs with --wavs only")
    # the chain first: a vocoder made for other mels is refused before any input is read
    chain = (chain_from_parts(codec, vocoder, device) if voice is None and (codec or vocoder)
             else chain_from_voice(voice, device))
    if manifest is not None:
        from codectts.data.manifest import read_corpus

        utts, root = read_corpus(manifest, split=split)
        items = [Item(u.id, u.audio_path(root), u.text) for u in utts]
    else:
        if not wavs.is_dir():
            raise DataError(f"{wavs}: not a folder")
        paths = sorted(wavs.glob("*.wav"))
        if texts is not None:
            items = [Item(it.id, it.path, it.text) for it in folder_items(wavs, texts)]
        else:
            items = [Item(p.stem, p, p.with_suffix(".txt").read_text(encoding="utf-8").strip()
                          if p.with_suffix(".txt").exists() else None) for p in paths]
    items = items[:limit] if limit else items
    if not items:
        raise DataError(f"{manifest or wavs}: no wavs")
    has_text = any(it.text for it in items)
    transcriber = _transcriber(asr_model, 1) if asr and has_text else None

    def show(r: dict) -> None:
        if quiet:
            return
        parts = [r["id"], f"PESQ {r['pesq_wb']:.2f}" if r.get("pesq_wb") else "PESQ -",
                 f"STOI {r['stoi']:.3f}" if r.get("stoi") else "STOI -"]
        if r.get("dnsmos"):
            parts.append(f"OVRL {r['dnsmos']['ovrl']:.2f}")
        if "hypothesis" in r:
            parts.append(f"=> {r['hypothesis']}")
        typer.echo("\t".join(parts))

    result = run_roundtrip(chain, items, out, transcriber, _naturalness(dnsmos), reference=reference, progress=show)
    s = result["summary"]
    for uid, why in s["skipped"].items():
        typer.echo(f"skipped {uid}: {why}")
    line = [chain.name, f"{s['resynthesised']}/{s['n']} resynthesised"]
    if s.get("vs_input"):
        v = s["vs_input"]
        line += [f"PESQ {v['pesq_wb']:.2f}" if v.get("pesq_wb") else "PESQ -",
                 f"STOI {v['stoi']:.3f}" if v.get("stoi") else "STOI -", f"mel L1 {v['mel_l1']:.3f}"]
    if "wer" in s:
        line.append(f"WER {s['wer']:.4f} CER {s['cer']:.4f}")
        if "input_wer" in s:
            line.append(f"(input WER {s['input_wer']:.4f} CER {s['input_cer']:.4f})")
    if s.get("dnsmos"):
        from codectts.eval.naturalness import format_dnsmos

        line.append(format_dnsmos(s["dnsmos"]))
        if s.get("dnsmos_input"):
            line.append(f"(input OVRL {s['dnsmos_input']['ovrl']:.2f})")
    if s.get("bits_per_second"):
        line.append(f"{s['bits_per_second']:.0f} bit/s, {s['frame_rate']:.1f} frames/s x {s['n_codebooks']}")
    if s.get("rtf") is not None:
        line.append(f"RTF {s['rtf']:.4f}")
    typer.echo("summary: " + ", ".join(line))
    _write_json(out / "roundtrip.json", {"source": str(manifest or wavs), **result})

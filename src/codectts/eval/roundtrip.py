"""Round trip: wav -> codec codes -> mel -> vocoder -> wav, judged against the input.

This is how every codec or vocoder change is judged (`codectts eval roundtrip`): each input is
resynthesised through a sound chain (a voice's codec and vocoder, or a codec part and/or vocoder
given directly; a chain with no codec measures the vocoder alone on the input's own mel) and
written under the same file name. Per utterance: PESQ-wb, STOI, SI-SDR, log-mel and MR-STFT
distances against the input (`metrics.compare`), DNSMOS of input and output, and WER/CER of input
and output when texts are known; the input's figures are the ground-truth rows to read beside.

Bad input is reported, never fatal: another sample rate is resampled (with a warning), clipped
samples are counted, silent, empty or unreadable files are listed as skipped.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codectts.audio.io import load_audio, resample, save_wav
from codectts.audio.mel import MelConfig, MelSpectrogram, mel_preset
from codectts.errors import AudioError, ConfigError, DataError

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # as the ASR and DNSMOS: below about -80 dBFS there is nothing to resynthesise
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped


@dataclass
class SoundChain:
    """codec (mel RVQ, waveform codec, or None) + vocoder; `__call__` resynthesises one clip."""

    vocoder: object | None
    codec: object | None = None
    name: str = "chain"

    def __post_init__(self):
        if self.vocoder is None and (self.codec is None or hasattr(self.codec, "decode_mel")):
            raise ConfigError(f"{self.name}: a mel chain needs a vocoder")
        if self.vocoder is not None and self.codec is not None and hasattr(self.codec, "cfg"):
            self.codec.cfg.mel.check_compatible(self.vocoder.mel, f"{self.name}: codec vs vocoder")
            from codectts.vocoders import check_vocoder_codec

            check_vocoder_codec(self.vocoder, self.codec, self.name)
        self._melspec = MelSpectrogram(self.mel) if self.mel is not None else None

    @property
    def mel(self) -> MelConfig | None:
        return self.vocoder.mel if self.vocoder is not None else None

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.sample_rate if self.vocoder is not None else self.codec.sample_rate)

    def info(self) -> dict:
        out: dict = {"name": self.name, "sample_rate": self.sample_rate,
                     "vocoder": self.vocoder.spec() if self.vocoder is not None else None}
        if self.codec is not None:
            out.update(codec=self.codec.spec(), frame_rate=float(self.codec.frame_rate),
                       n_codebooks=int(self.codec.n_codebooks), codebook_size=int(self.codec.codebook_size),
                       bits_per_second=float(self.codec.frame_rate * self.codec.n_codebooks
                                             * np.log2(self.codec.codebook_size)))
        return out

    @torch.no_grad()
    def __call__(self, wav: np.ndarray) -> tuple[np.ndarray, dict]:
        """wav [T] at `sample_rate` -> (resynthesised wav [T], seconds spent in codec and vocoder)."""
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None]
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        if self.codec is not None and not hasattr(self.codec, "decode_mel"):  # waveform codec (Mimi)
            y = self.codec.decode(self.codec.encode(x))
            times["codec_s"] = time.perf_counter() - t0
        else:
            mel = self._melspec(x)
            if self.codec is not None:
                mel = self.codec.decode_mel(self.codec.encode_mel(mel))[..., : mel.shape[-1]]
                times["codec_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            y = self.vocoder(mel)
            times["vocoder_s"] = time.perf_counter() - t1
        y = y.reshape(-1).float().cpu().numpy()[: len(wav)]
        if len(y) < len(wav):
            y = np.pad(y, (0, len(wav) - len(y)))
        return y, times


def vocoder_from_arg(arg: str, mel: MelConfig | None = None, device: str = "cpu"):
    """"griffinlim" (for `mel`, default the vocoder-grade preset) or the folder of a trained vocoder part."""
    if arg == "griffinlim":
        from codectts.vocoders import GriffinLim

        return GriffinLim(mel or mel_preset("vocoder")).to(device)
    from codectts.vocoders import load_vocoder_part

    return load_vocoder_part(arg, mel, device)  # refused at load when the part was made for other mels


def chain_from_voice(voice: str, device: str = "cpu") -> SoundChain:
    from codectts.infer.voice import load_codec_and_vocoder, read_voice_json, resolve_voice

    root = resolve_voice(voice)
    meta = read_voice_json(root)
    codec, vocoder = load_codec_and_vocoder(root, meta, device)
    return SoundChain(vocoder=vocoder, codec=codec, name=f"voice {meta['name']}")


def chain_from_parts(codec: str | Path | None, vocoder: str | None, device: str = "cpu") -> SoundChain:
    """A codec part (or none: the vocoder alone on the input's mel) and a vocoder ("griffinlim" or a part)."""
    from codectts.codecs.registry import load_codec

    c = load_codec(str(codec), device=device) if codec is not None else None
    mel = c.cfg.mel if c is not None and hasattr(c, "cfg") else None
    v = vocoder_from_arg(vocoder or "griffinlim", mel, device) if (c is None or mel is not None) else None
    name = " + ".join(p for p in [Path(codec).name if codec else "no codec", vocoder or "griffinlim"])
    return SoundChain(vocoder=v, codec=c, name=name)


@dataclass(frozen=True)
class Item:
    id: str
    path: Path
    text: str | None = None


@dataclass
class Prepared:
    wav: np.ndarray | None
    notes: dict = field(default_factory=dict)


def prepare_input(path: Path, sr: int) -> Prepared:
    """Load one input for a chain at `sr`: resampled (warned), clipping counted, silence/empty/unreadable skipped."""
    try:
        wav, file_sr = load_audio(path, allow_empty=True)
    except AudioError as e:
        log.warning("%s", e)
        return Prepared(None, {"skipped": f"unreadable: {e}"})
    notes: dict = {}
    if wav.size and file_sr != sr:
        log.warning("%s: %d Hz, resampled to the chain's %d Hz", path.name, file_sr, sr)
        wav = resample(wav, file_sr, sr)
        notes["resampled_from"] = int(file_sr)
    if wav.size == 0:
        return Prepared(None, {**notes, "skipped": "empty"})
    peak = float(np.abs(wav).max())
    if peak < SILENCE_PEAK:
        log.warning("%s: silent (peak %.1e), not resynthesised", path.name, peak)
        return Prepared(None, {**notes, "skipped": "silent"})
    clipped = float(np.mean(np.abs(wav) >= CLIP_LEVEL))
    if clipped > 0:
        notes["clipped_fraction"] = clipped
        if clipped > 1e-3:
            log.warning("%s: %.2f %% of samples clipped", path.name, 100 * clipped)
    return Prepared(np.clip(wav, -1.0, 1.0), notes)


def run_roundtrip(chain: SoundChain, items: list[Item], out_dir: Path, transcriber=None, naturalness=None,
                  reference: bool = True, progress=None) -> dict:
    """Resynthesise `items` into `out_dir` (same file names) and score them; JSON-ready dict."""
    from codectts.eval.asr import utterance_scores, wer_cer
    from codectts.eval.metrics import compare, mean_metrics
    from codectts.eval.naturalness import dnsmos_summary

    if not items:
        raise DataError("no input wavs")
    names = [it.path.name for it in items]
    if len(set(names)) != len(names):
        raise DataError("input wavs share file names; outputs would overwrite each other")
    out_dir = Path(out_dir)
    sr = chain.sample_rate
    records, scored = [], []
    synth_s = audio_s = 0.0
    for it in items:
        prep = prepare_input(it.path, sr)
        rec: dict = {"id": it.id, "input": str(it.path), **prep.notes}
        if it.text is not None:
            rec["text"] = it.text
        if prep.wav is None:
            records.append(rec)
            continue
        y, times = chain(prep.wav)
        out = out_dir / it.path.name
        save_wav(out, y, sr)
        synth_s += sum(times.values())
        audio_s += len(y) / sr
        rec.update(output=str(out), duration_s=len(y) / sr, **times, **compare(prep.wav, y, sr))
        if naturalness is not None:
            rec["dnsmos"] = naturalness.score(y, sr)
            if reference:
                rec["dnsmos_input"] = naturalness.score(prep.wav, sr)
        if transcriber is not None and it.text is not None:
            rec["hypothesis"] = transcriber.transcribe(y, sr)
            if reference:
                rec["hypothesis_input"] = transcriber.transcribe(prep.wav, sr)
        records.append(rec)
        scored.append(rec)
        if progress:
            progress(rec)
    summary: dict = {**chain.info(), "n": len(items), "resynthesised": len(scored),
                     "skipped": {r["id"]: r["skipped"] for r in records if "skipped" in r},
                     "resampled": sum("resampled_from" in r for r in records),
                     "clipped": sum(r.get("clipped_fraction", 0) > 1e-3 for r in records),
                     "audio_s": audio_s, "synth_s": synth_s, "rtf": synth_s / audio_s if audio_s else None}
    if scored:
        keys = ("mel_l1", "mel_mse", "mrstft", "si_sdr", "pesq_wb", "stoi")
        summary["vs_input"] = mean_metrics([{k: r[k] for k in keys} for r in scored])
    if naturalness is not None:
        summary["dnsmos"] = dnsmos_summary(scored)
        if reference:
            summary["dnsmos_input"] = dnsmos_summary(scored, key="dnsmos_input")
    with_text = [r for r in scored if "hypothesis" in r]
    if with_text:
        refs = [r["text"] for r in with_text]
        summary.update({k: v for k, v in wer_cer(refs, [r["hypothesis"] for r in with_text]).items() if k != "n"})
        for r, s in zip(with_text, utterance_scores(refs, [r["hypothesis"] for r in with_text]), strict=True):
            r.update(wer=s["wer"], cer=s["cer"])
        if reference:
            gt = wer_cer(refs, [r["hypothesis_input"] for r in with_text])
            summary["input_wer"], summary["input_cer"] = gt["wer"], gt["cer"]
    return {"utterances": records, "summary": summary}

"""Voices: a directory with `voice.json` naming its parts, each a release part or a JSON spec.

    voice.json = {
      "format_version": 1, "name": "joe", "description": "...", "sample_rate": 22050,
      "model": {"type": "talker", "path": "talker"},      # acoustic model part
      "duration": {"path": "duration"},                    # length source (aligned models)
      "codec": {"type": "mel_rvq", "path": "codec"},
      "vocoder": {...vocoder.spec()...},                   # e.g. Griffin-Lim settings, or a HiFi-GAN part
      "tokenizer": "tokenizer.json",
      "sampling": {"temperature": 0.5, "top_k": 20},     # defaults a user may override
      "sentence_pause_s": 0.2
    }
The model may also be a TTS TRM ({"type": "trm", "path": ...}: a `codectts train trm` release, which
carries its tokenizer and length source) or a CSM ({"type": "csm", "path": ...} over a Mimi codec
{"type": "mimi", "source": folder or hub id, "n_codebooks": K}, no vocoder; an optional
"reference": {"audio": "ref.wav", "text": "..."} gives it its default speaker).
Shipped voices live in `codectts/voices/`; more are found in $CODECTTS_VOICES (colon-separated folders).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from codectts.errors import ConfigError

VOICE_FORMAT = 1
PACKAGE_VOICES = Path(__file__).resolve().parent.parent / "voices"
DEFAULT_VOICE = "joe"


def voice_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("CODECTTS_VOICES", "").split(os.pathsep) if p]
    return [*extra, PACKAGE_VOICES]


def resolve_voice(voice: str | os.PathLike | None) -> Path:
    """A voice name (shipped or in $CODECTTS_VOICES) or a path -> its directory."""
    voice = DEFAULT_VOICE if voice is None else voice
    p = Path(voice)
    if (p / "voice.json").exists():
        return p
    if isinstance(voice, str) and os.sep not in voice:
        for d in voice_dirs():
            if (d / voice / "voice.json").exists():
                return d / voice
    names = [v["name"] for v in list_voices()]
    raise ConfigError(f"voice {str(voice)!r} not found (no voice.json); available: {names or 'none'}")


def read_voice_json(path: Path) -> dict:
    f = Path(path) / "voice.json"
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not a voice (no voice.json)") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{f}: invalid JSON ({e})") from None
    if meta.get("format_version") != VOICE_FORMAT:
        raise ConfigError(
            f"{f}: voice format_version {meta.get('format_version')!r} unsupported (expected {VOICE_FORMAT})"
        )
    needed = ["name", "model", "codec"]
    if meta.get("model", {}).get("type", "talker") == "talker":
        needed.append("tokenizer")  # TRM and CSM parts carry their tokenizer
    if meta.get("codec", {}).get("type") == "mel_rvq":
        needed.append("vocoder")  # a waveform codec (Mimi) needs none
    for key in needed:
        if key not in meta:
            raise ConfigError(f"{f}: voice lacks {key!r}")
    return meta


def voice_part(root: Path, meta: dict, key: str) -> Path:
    """The folder of a voice's part (meta[key]["path"] relative to the voice); ConfigError when missing."""
    p = Path(root) / meta[key]["path"]
    if not p.exists():
        raise ConfigError(f"voice {meta.get('name')!r}: missing part {key!r} at {p}")
    return p


def load_codec_and_vocoder(root: Path, meta: dict, device: str = "cpu"):
    """A voice's sound chain: (codec, vocoder or None). A mel codec and its vocoder must share one
    MelConfig (checked when they are paired), so a vocoder made for other mels is refused here."""
    from codectts.codecs.registry import load_codec
    from codectts.vocoders import load_vocoder

    vocoder = load_vocoder(meta["vocoder"], root=root, device=device) if meta.get("vocoder") else None
    codec_spec = dict(meta["codec"])
    if codec_spec.get("type") == "mel_rvq":
        codec_spec["path"] = str(voice_part(root, meta, "codec"))
    elif codec_spec.get("source") and (Path(root) / codec_spec["source"]).exists():  # Mimi stored in the voice
        codec_spec["source"] = str(Path(root) / codec_spec["source"])
    return load_codec(codec_spec, vocoder=vocoder, device=device), vocoder


def list_voices() -> list[dict]:
    out, seen = [], set()
    for d in voice_dirs():
        if not d.is_dir():
            continue
        for v in sorted(d.iterdir()):
            if (v / "voice.json").exists() and v.name not in seen:
                try:
                    meta = read_voice_json(v)
                except ConfigError:
                    continue
                seen.add(v.name)
                out.append(
                    {
                        "name": v.name,
                        "path": str(v),
                        "sample_rate": meta.get("sample_rate"),
                        "description": meta.get("description", ""),
                        "model": meta["model"].get("type"),
                    }
                )
    return out

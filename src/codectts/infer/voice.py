"""Voices: a directory with `voice.json` naming its parts, each a release part or a JSON spec.

    voice.json = {
      "format_version": 1, "name": "joe", "description": "...", "sample_rate": 22050,
      "model": {"type": "talker", "path": "talker"},      # acoustic model part (trm: + "decode": "soft")
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

voice.json is checked against `VoiceSpec` (types, ranges, unknown keys) and every path in it must stay
inside the voice folder, so a bad field is a ConfigError naming it, never a traceback from deep inside
a model; a Mimi hub id is read from the local cache only (codecs/mimi.py).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from codectts.errors import ConfigError
from codectts.infer.precision import check_weights
from codectts.models.sampling import SamplingConfig
from codectts.schema import from_dict

VOICE_FORMAT = 1
PACKAGE_VOICES = Path(__file__).resolve().parent.parent / "voices"
DEFAULT_VOICE = "joe-trm"  # 3.1 % dev WER beside the Talker joe's 5.6 % (src/codectts/voices/joe-trm/MODEL_CARD.md)
RUNTIMES = ("torch", "onnx", "onnx-int8")  # how a Talker's frames run (infer/onnx_talker.py, docs/speed.md)
MAX_PAUSE_S = 5.0  # between sentences; longer is a typo (ms for s), not a style
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


# ---- voice.json schema: every field typed and ranged, so a bad value is a ConfigError naming it ----------------
@dataclass(frozen=True)
class PartSpec:
    path: str


@dataclass(frozen=True)
class ModelSpec:
    type: Literal["talker", "trm", "csm"]
    path: str
    decode: Literal["codes", "soft"] = "codes"  # trm: decode drawn codes, or the expected codec latent

    def __post_init__(self):
        if self.decode != "codes" and self.type != "trm":
            raise ConfigError(f"'decode' {self.decode!r} is for trm models only")


@dataclass(frozen=True)
class CodecSpec:
    type: Literal["mel_rvq", "mimi"]
    path: str | None = None  # mel_rvq: a part folder in the voice
    source: str | None = None  # mimi: a folder in the voice, or a hub id found in the local cache
    n_codebooks: int | None = None
    codebook_size: int | None = None
    sample_rate: int | None = None
    frame_rate: float | None = None

    def __post_init__(self):
        if self.type == "mel_rvq" and not self.path:
            raise ConfigError("a mel_rvq codec needs 'path'")
        if self.type == "mimi" and (not self.source or self.n_codebooks is None):
            raise ConfigError("a mimi codec needs 'source' and 'n_codebooks'")
        for key in ("n_codebooks", "codebook_size", "sample_rate", "frame_rate"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"{key!r} must be positive, got {getattr(self, key)}")


@dataclass(frozen=True)
class ContextSpec:
    frames: int | None = None
    phonemes: int | None = None

    def __post_init__(self):
        for key in ("frames", "phonemes"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key!r} must be >= 1, got {getattr(self, key)}")


@dataclass(frozen=True)
class ReferenceSpec:
    audio: str
    text: str


@dataclass(frozen=True)
class VoiceSpec:
    format_version: int
    name: str
    model: ModelSpec
    codec: CodecSpec
    description: str = ""
    sample_rate: int | None = None
    duration: PartSpec | None = None
    vocoder: dict | None = None  # a vocoder spec; load_vocoder checks its fields
    tokenizer: str | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # the voice's defaults
    sentence_pause_s: float = 0.2
    context: ContextSpec | None = None
    reference: ReferenceSpec | None = None
    weights: str = "float32"  # a Talker's weight precision at load (infer/precision.py)
    # what backend='auto' runs an aligned Talker on, on cpu: 'onnx' (the torch audio, faster), or
    # 'onnx-int8' where the voice's maker measured int8 weights to keep its quality (docs/speed.md)
    backend: str = "onnx"

    def __post_init__(self):
        check_weights(self.weights, "'weights'")
        if self.backend not in RUNTIMES:
            raise ConfigError(f"'backend' must be one of {list(RUNTIMES)}, got {self.backend!r}")
        if self.weights != "float32" and self.model.type != "talker":
            raise ConfigError(f"'weights' {self.weights!r} is for talker voices only")
        if not self.name.strip():
            raise ConfigError("'name' must not be empty")
        if self.model.type == "talker" and self.tokenizer is None:
            raise ConfigError("voice lacks 'tokenizer'")  # TRM and CSM parts carry their tokenizer
        if self.codec.type == "mel_rvq" and self.vocoder is None:
            raise ConfigError("voice lacks 'vocoder'")  # a waveform codec (Mimi) needs none
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ConfigError(f"'sample_rate' must be positive, got {self.sample_rate}")
        if not 0 <= self.sentence_pause_s <= MAX_PAUSE_S:
            raise ConfigError(f"'sentence_pause_s' must be in [0, {MAX_PAUSE_S:g}] seconds, "
                              f"got {self.sentence_pause_s}")


def inside(root: Path, rel: str, what: str) -> Path:
    """`root / rel`, refused unless it stays inside the voice folder (no absolute paths, '..' or symlinks out)."""
    if not rel or Path(rel).is_absolute() or Path(rel).drive:
        raise ConfigError(f"{root / 'voice.json'}: {what} {rel!r} must be a relative path inside the voice folder")
    base = Path(root).resolve()
    p = (base / rel).resolve()
    if p != base and base not in p.parents:
        raise ConfigError(f"{root / 'voice.json'}: {what} {rel!r} points outside the voice folder")
    return p


def mimi_source(root: Path, source: str) -> str:
    """A Mimi codec's source: a folder inside the voice (resolved), else a hub id (loaded from the local cache)."""
    if (Path(root) / source).exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        return str(inside(root, source, "codec source"))
    if not _HUB_ID.fullmatch(source):
        raise ConfigError(f"{root / 'voice.json'}: codec source {source!r} is neither a folder in the voice "
                          f"nor a hub id such as 'kyutai/mimi'")
    return source


# ---- finding and reading voices -------------------------------------------------------------------------------
def voice_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("CODECTTS_VOICES", "").split(os.pathsep) if p]
    return [*extra, PACKAGE_VOICES]


def resolve_voice(voice: str | os.PathLike | None) -> Path:
    """A voice name (shipped or in $CODECTTS_VOICES) or a path -> its directory."""
    voice = DEFAULT_VOICE if voice is None else voice
    if not isinstance(voice, str | os.PathLike):
        raise ConfigError(f"a voice is a name or a folder, got {type(voice).__name__}")
    try:
        p = Path(voice)
        found = (p / "voice.json").exists()
    except (OSError, ValueError):  # NUL bytes, names too long for the file system
        found = False
    if found:
        return p
    if isinstance(voice, str) and voice and os.sep not in voice and "\x00" not in voice:
        for d in voice_dirs():
            try:
                if (d / voice / "voice.json").exists():
                    return d / voice
            except (OSError, ValueError):
                break
    names = [v["name"] for v in list_voices()]
    raise ConfigError(f"voice {str(voice)[:80]!r} not found (no voice.json); available: {names or 'none'}")


def read_voice(path: Path) -> tuple[dict, VoiceSpec]:
    """voice.json -> (the dict as written, its checked VoiceSpec); paths must stay inside the folder."""
    f = Path(path) / "voice.json"
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not a voice (no voice.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{f}: unreadable ({e})") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{f}: invalid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{f}: must be a JSON object")
    if meta.get("format_version") != VOICE_FORMAT:
        raise ConfigError(
            f"{f}: voice format_version {meta.get('format_version')!r} unsupported (expected {VOICE_FORMAT})"
        )
    spec = from_dict(VoiceSpec, meta, str(f))
    root = Path(path)
    inside(root, spec.model.path, "model path")
    if spec.duration is not None:
        inside(root, spec.duration.path, "duration path")
    if spec.codec.type == "mel_rvq":
        inside(root, spec.codec.path, "codec path")
    else:
        mimi_source(root, spec.codec.source)
    if spec.tokenizer is not None:
        inside(root, spec.tokenizer, "tokenizer")
    if spec.reference is not None:
        inside(root, spec.reference.audio, "reference audio")
    if isinstance(spec.vocoder, dict) and spec.vocoder.get("path") is not None:
        if not isinstance(spec.vocoder["path"], str):
            raise ConfigError(f"{f}: vocoder: 'path' must be a string")
        inside(root, spec.vocoder["path"], "vocoder path")
    return meta, spec


def read_voice_json(path: Path) -> dict:
    """voice.json as a dict, checked (see `read_voice`)."""
    return read_voice(path)[0]


def voice_part(root: Path, meta: dict, key: str) -> Path:
    """The folder of a voice's part (meta[key]["path"], inside the voice); ConfigError when missing."""
    p = inside(root, meta[key]["path"], f"{key} path")
    if not p.exists():
        raise ConfigError(f"voice {meta.get('name')!r}: missing part {key!r} at {p}")
    return p


def load_codec_and_vocoder(root: Path, meta: dict, device: str = "cpu"):
    """A voice's sound chain: (codec, vocoder or None). A mel codec and its vocoder must share one
    MelConfig (checked when they are paired), and a vocoder trained on another codec's decoded mels
    is refused, so a mismatched pair fails here rather than sounding wrong.
    A Mimi codec comes from a folder inside the voice or a hub id in the local cache (never downloaded)."""
    from codectts.codecs.registry import load_codec
    from codectts.vocoders import check_vocoder_codec, load_vocoder

    vocoder = load_vocoder(meta["vocoder"], root=root, device=device) if meta.get("vocoder") else None
    codec_spec = dict(meta["codec"])
    if codec_spec.get("type") == "mel_rvq":
        codec_spec["path"] = str(voice_part(root, meta, "codec"))
    else:
        codec_spec["source"] = mimi_source(root, codec_spec["source"])
    codec = load_codec(codec_spec, vocoder=vocoder, device=device)
    check_vocoder_codec(vocoder, codec, f"voice {meta.get('name')!r}")
    return codec, vocoder


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

"""Assemble a voice folder from trained parts (a Talker, a TTS TRM or a CSM, a codec, a vocoder, a
duration model, a reference clip); the result is verified by loading it."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from codectts.errors import ConfigError
from codectts.models.length import bundle_length_model
from codectts.models.sampling import SamplingConfig
from codectts.parts import read_part_config, replace_dir

TRM_RUN_KEYS = ("codes", "codec")  # where the training codes lived: the voice's codec replaces them


def part_extra(src: Path, model_type: str, *drop: str) -> dict:
    """What a part's config.json carries besides its weights' config (tokenizer, speakers, ...), less `drop`:
    the `extra` to save it again with (in fp16, say)."""
    meta = read_part_config(src, model_type)
    return {k: v for k, v in meta.items() if k not in ("model_type", "format_version", "config", *drop)}


def carried_length(src: Path, length: dict, duration: Path | None, **fields) -> tuple[dict, dict | None]:
    """A part's length source as its release carries it, and the files that go with it: a duration model
    (`duration`, else the part's own, resolved against the part folder `src`) travels inside as
    `length_model/`; `fields` override the stored ones (the codec's frame rate, say). Other sources stay."""
    if duration is None and length.get("kind") != "duration_model":
        return length, None
    base = length if length.get("kind") == "duration_model" else {}
    path = Path(duration) if duration is not None else Path(src) / base["path"]  # an absolute path stays
    return bundle_length_model({**base, "kind": "duration_model", "path": str(path.resolve()), **fields})


def save_trm(src: Path, dst: Path, *, half: bool, duration: Path | None, frame_rate: float) -> None:
    """A TRM release part -> `dst`, with its tokenizer, speakers and length source; its duration model
    (`duration`, else the part's own) travels inside as `length_model/` at the codec's frame rate."""
    from codectts.models.trm import TTSTRM

    model = TTSTRM.load(src)
    extra = part_extra(src, TTSTRM.model_type, *TRM_RUN_KEYS)
    extra["length"], files = carried_length(src, dict(extra.get("length") or {}), duration, frame_rate=frame_rate,
                                            min_frames=1, max_frames=model.cfg.max_frames)
    model.save(dst, half=half, extra=extra, files=files)


def save_csm(src: Path, dst: Path, *, half: bool, duration: Path | None = None) -> int:
    """A CSM part -> `dst` with its tokenizer (and everything else its config carries); an aligned CSM's
    duration model (`duration`, else the part's own) travels inside it as `length_model/`; -> its codebooks."""
    from codectts.models.csm import CSM

    model = CSM.load(src)
    extra, files = part_extra(src, CSM.model_type), None
    if duration is not None and not model.cfg.aligned:
        raise ConfigError("a duration part is for aligned csm voices (an interleaved csm ends speech itself)")
    if extra.get("length"):
        extra["length"], files = carried_length(src, dict(extra["length"]), duration)
    model.save(dst, half=half, extra=extra, files=files)
    return model.cfg.n_codebooks


def is_mel_codec(codec: str | Path) -> bool:
    """A mel RVQ codec part folder (not a Mimi folder or hub id)."""
    from codectts.codecs.mel_rvq import MelRVQCodec

    cfg = Path(codec) / "config.json"
    try:
        return cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == MelRVQCodec.model_type
    except (OSError, ValueError, AttributeError):
        return False


def build_csm_voice(tmp: Path, meta: dict, *, csm: Path, codec: str | Path, half: bool,
                    reference: Path | None, reference_text: str | None) -> None:
    """The CSM parts of a voice into `tmp` and `meta`: the model (with its tokenizer), Mimi (a folder
    copied in, or a hub id in the local cache) and the reference clip the voice speaks like when a
    request brings none."""
    n_codebooks = save_csm(Path(csm), tmp / "csm", half=half)
    source = str(codec)
    if Path(codec).is_dir():
        shutil.copytree(codec, tmp / "codec")
        source = "codec"
    meta.update(model={"type": "csm", "path": "csm"}, codec={"type": "mimi", "source": source,
                                                               "n_codebooks": n_codebooks})
    if (reference is None) != (reference_text is None) or (reference_text is not None and not reference_text.strip()):
        raise ConfigError("a reference clip goes with its transcript (what is said in it)")
    if reference is not None:
        clip = f"reference{Path(reference).suffix.lower() or '.wav'}"
        shutil.copy(reference, tmp / clip)
        meta["reference"] = {"audio": clip, "text": reference_text}


def build_voice(out: Path, *, name: str, codec: Path, talker: Path | None = None, trm: Path | None = None,
                csm: Path | None = None, decode: str = "codes", vocoder: str = "griffinlim",
                duration: Path | None = None, description: str = "", sampling: dict | None = None,
                half: bool = True, model_card: Path | None = None, sentence_pause_s: float = 0.2,
                context: dict | None = None, reference: Path | None = None,
                reference_text: str | None = None) -> Path:
    """Exactly one of `talker`, `trm` and `csm`. A TRM part carries its tokenizer and length source;
    `duration` replaces that source for a TRM, and is the aligned Talker's duration part otherwise.
    `decode` ('codes' | 'soft') is how a TRM voice decodes (infer/engines.py). A CSM voice's `codec` is
    a Mimi folder or hub id, and `reference` / `reference_text` its default speaker; or a mel RVQ codec
    part (an aligned CSM trained on its codes), then with a vocoder as for the other models."""
    from codectts.codecs.mel_rvq import MelRVQCodec
    from codectts.infer.voice import VOICE_FORMAT
    from codectts.models.duration import DurationModel
    from codectts.models.talker import Talker
    from codectts.text.tokenizers import PhonemeTokenizer
    from codectts.vocoders import GriffinLim, load_vocoder_part

    if sum(x is not None for x in (talker, trm, csm)) != 1:
        raise ConfigError("give exactly one acoustic model: a talker, a trm or a csm part")
    over_mimi = csm is not None and not is_mel_codec(codec)  # else the mel codec + vocoder layout
    if duration is not None and over_mimi:
        raise ConfigError("a duration part is for aligned csm voices over a mel codec")
    if decode != "codes" and trm is None:
        raise ConfigError(f"decode {decode!r} is for trm voices only")
    if reference is not None and not over_mimi:
        raise ConfigError("a reference clip is for csm voices over Mimi only")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
    try:
        if over_mimi:
            meta = {"format_version": VOICE_FORMAT, "name": name, "description": description,
                    "sampling": asdict(SamplingConfig.from_dict(sampling or {})), "sentence_pause_s": sentence_pause_s}
            build_csm_voice(tmp, meta, csm=csm, codec=codec, half=half, reference=reference,
                            reference_text=reference_text)
            return _finish(tmp, out, meta, model_card)
        codec_model = MelRVQCodec.load(codec)
        codec_model.save(tmp / "codec", half=False)  # codebooks stay fp32: nearest-neighbour needs precision
        meta = {"format_version": VOICE_FORMAT, "name": name, "description": description,
                "sample_rate": codec_model.sample_rate, "model": {"type": "talker", "path": "talker"},
                "codec": {"type": "mel_rvq", "path": "codec"}, "tokenizer": "tokenizer.json",
                "sampling": asdict(SamplingConfig.from_dict(sampling or {})),
                "sentence_pause_s": sentence_pause_s}
        if trm is not None:
            save_trm(Path(trm), tmp / "trm", half=half, duration=duration, frame_rate=codec_model.frame_rate)
            meta["model"] = {"type": "trm", "path": "trm", **({"decode": decode} if decode != "codes" else {})}
            del meta["tokenizer"]  # the TRM part carries its own
        elif csm is not None:
            save_csm(Path(csm), tmp / "csm", half=half, duration=duration)
            meta["model"] = {"type": "csm", "path": "csm"}
            del meta["tokenizer"]  # the CSM part carries its own
        else:
            Talker.load(talker).save(tmp / "talker", half=half)
        if context:
            meta["context"] = {k: int(v) for k, v in context.items() if v}
        if duration is not None and talker is not None:
            DurationModel.load(duration).save(tmp / "duration", half=False)
            meta["duration"] = {"path": "duration"}
        if vocoder == "griffinlim":
            meta["vocoder"] = GriffinLim(codec_model.cfg.mel).spec()
        else:
            src = Path(vocoder)
            shutil.copytree(src, tmp / "vocoder")
            if half:
                halve_weights(tmp / "vocoder")
            meta["vocoder"] = load_vocoder_part(tmp / "vocoder").spec(root=tmp)
        if talker is not None:
            PhonemeTokenizer().save(tmp / "tokenizer.json")
        return _finish(tmp, out, meta, model_card)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def halve_weights(part: Path) -> None:
    """Store a part's floating weights as fp16 in place (a trained vocoder's run writes fp32; loading casts
    back to the model's dtype)."""
    from safetensors.torch import load_file, save

    from codectts.fileio import atomic_write_bytes
    from codectts.parts import half_floats

    path = part / "model.safetensors"
    atomic_write_bytes(path, save(half_floats(load_file(path))))


def _finish(tmp: Path, out: Path, meta: dict, model_card: Path | None) -> Path:
    """voice.json and the model card into `tmp`; `tmp` replaces `out` once the voice loads from it."""
    from codectts.infer.synthesizer import Synthesizer

    if model_card is not None:
        shutil.copy(model_card, tmp / "MODEL_CARD.md")
    (tmp / "voice.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    Synthesizer.load(tmp)  # refuse to write a voice that does not load
    replace_dir(tmp, out)
    return out

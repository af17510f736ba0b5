"""Assemble a voice folder from trained parts; the result is verified by loading it."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from codectts.models.sampling import SamplingConfig
from codectts.parts import replace_dir


def build_voice(out: Path, *, name: str, talker: Path, codec: Path, vocoder: str = "griffinlim",
                duration: Path | None = None, description: str = "", sampling: dict | None = None,
                half: bool = True, model_card: Path | None = None, sentence_pause_s: float = 0.2,
                context: dict | None = None) -> Path:
    from codectts.codecs.mel_rvq import MelRVQCodec
    from codectts.infer.synthesizer import Synthesizer
    from codectts.infer.voice import VOICE_FORMAT
    from codectts.models.duration import DurationModel
    from codectts.models.talker import Talker
    from codectts.text.tokenizers import PhonemeTokenizer
    from codectts.vocoders import GriffinLim, load_vocoder

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp"))
    try:
        codec_model = MelRVQCodec.load(codec)
        codec_model.save(tmp / "codec", half=False)  # codebooks stay fp32: nearest-neighbour needs precision
        Talker.load(talker).save(tmp / "talker", half=half)
        meta = {"format_version": VOICE_FORMAT, "name": name, "description": description,
                "sample_rate": codec_model.sample_rate, "model": {"type": "talker", "path": "talker"},
                "codec": {"type": "mel_rvq", "path": "codec"}, "tokenizer": "tokenizer.json",
                "sampling": asdict(SamplingConfig.from_dict(sampling or {})),
                "sentence_pause_s": sentence_pause_s}
        if context:
            meta["context"] = {k: int(v) for k, v in context.items() if v}
        if duration is not None:
            DurationModel.load(duration).save(tmp / "duration", half=False)
            meta["duration"] = {"path": "duration"}
        if vocoder == "griffinlim":
            meta["vocoder"] = GriffinLim(codec_model.cfg.mel).spec()
        else:
            src = Path(vocoder)
            shutil.copytree(src, tmp / "vocoder")
            meta["vocoder"] = load_vocoder({"type": "hifigan", "path": "vocoder"}, root=tmp).spec(root=tmp)
        PhonemeTokenizer().save(tmp / "tokenizer.json")
        if model_card is not None:
            shutil.copy(model_card, tmp / "MODEL_CARD.md")
        (tmp / "voice.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        Synthesizer.load(tmp)  # refuse to write a voice that does not load
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out

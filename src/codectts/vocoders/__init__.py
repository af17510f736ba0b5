"""Vocoders: log-mel -> waveform behind one `Vocoder` contract (Griffin-Lim needs no training; HiFi-GAN does)."""
from codectts.vocoders.base import Vocoder, check_mel, load_vocoder
from codectts.vocoders.griffinlim import GriffinLim

__all__ = ["Vocoder", "GriffinLim", "check_mel", "load_vocoder"]

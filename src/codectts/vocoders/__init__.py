"""Vocoders: log-mel -> waveform behind one `Vocoder` contract (Griffin-Lim needs no training; HiFi-GAN
and Vocos do).

`load_vocoder(spec, root)` rebuilds a vocoder from the JSON a voice stores; `VocoderStream` turns
any of them into a chunked, streaming one.
"""
from codectts.vocoders.base import (
           Vocoder,
           check_mel,
           check_vocoder_codec,
           default_vocoder,
           load_vocoder,
           load_vocoder_part,
)
from codectts.vocoders.griffinlim import GriffinLim
from codectts.vocoders.hifigan import HiFiGAN, HiFiGANConfig
from codectts.vocoders.streaming import (
           StreamConfig,
           VocoderStream,
           stream_config_for,
           vocode_chunked,
)
from codectts.vocoders.vocos import Vocos, VocosConfig
from codectts.vocoders.vocos import preset as vocos_preset

__all__ = [
           "GriffinLim",
           "HiFiGAN",
           "HiFiGANConfig",
           "StreamConfig",
           "Vocoder",
           "VocoderStream",
           "Vocos",
           "VocosConfig",
           "check_mel",
           "check_vocoder_codec",
           "default_vocoder",
           "load_vocoder",
           "load_vocoder_part",
           "stream_config_for",
           "vocode_chunked",
           "vocos_preset",
]

"""Audio codecs: a `Codec` turns audio into integer codes [B, K, F] and back."""
from codectts.codecs.base import Codec, check_codes

__all__ = ["Codec", "check_codes"]

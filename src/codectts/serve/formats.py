"""Audio encoders for the server: whole files and incremental streams, from float32 mono chunks.

Which compressed formats exist depends on the libsndfile that soundfile loaded, so each one is
probed once by encoding a short tone; the API refuses (400) what this machine cannot encode.
"""
from __future__ import annotations

import functools
import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from codectts.audio.io import check_finite  # numpy/soundfile only: no torch for the server
from codectts.errors import ConfigError

PCM16_MAX = 32767
WAV_HEADER_BYTES = 44
# A streamed wav does not know its length; players read "unknown" sizes as "until the stream ends".
WAV_UNKNOWN_SIZE = 0xFFFFFFFF
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates an Ogg/Opus stream may carry
MP3_COMPRESSION = 0.5  # libsndfile 0 (best) .. 1 (smallest); 0.5 is ~64-80 kbit/s for 22 kHz speech
PROBE_SR = 24000
RAW_STREAM_FORMATS = ("wav", "pcm")  # streamed as a header (wav) + raw 16-bit PCM, no libsndfile


@dataclass(frozen=True)
class AudioFormat:
    """One `response_format`: how libsndfile spells it and what the client is told."""

    name: str
    media_type: str
    sf_format: str | None  # None: raw 16-bit PCM, written without libsndfile
    sf_subtype: str | None
    streamable: bool  # can be encoded append-only, chunk by chunk


FORMATS: dict[str, AudioFormat] = {f.name: f for f in (
    AudioFormat("wav", "audio/wav", "WAV", "PCM_16", True),
    AudioFormat("pcm", "audio/pcm", None, None, True),
    AudioFormat("flac", "audio/flac", "FLAC", "PCM_16", False),  # libsndfile seeks back to fill STREAMINFO
    AudioFormat("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III", True),
    AudioFormat("opus", "audio/ogg", "OGG", "OPUS", True),
)}
# Named by OpenAI but with no encoder in libsndfile: always refused.
KNOWN_UNENCODABLE = ("aac",)


def output_rate(fmt: str, sr: int) -> int:
    """Sample rate of the encoded audio: the voice's own, except for Opus (next rate it allows)."""
    if fmt != "opus":
        return sr
    return next((r for r in OPUS_RATES if r >= sr), OPUS_RATES[-1])


def to_pcm16(wav: np.ndarray) -> bytes:
    """float32 [-1, 1] -> 16-bit little-endian PCM bytes (clipped, rounded)."""
    wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return np.round(wav * PCM16_MAX).astype("<i2").tobytes()


def wav_header(sr: int, data_bytes: int | None) -> bytes:
    """A 16-bit mono RIFF header; `data_bytes=None` writes the "unknown length" sizes streams use."""
    byte_rate, block_align, bits = sr * 2, 2, 16
    riff = WAV_UNKNOWN_SIZE if data_bytes is None else WAV_HEADER_BYTES - 8 + data_bytes
    data = WAV_UNKNOWN_SIZE if data_bytes is None else data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sr, byte_rate, block_align, bits)
            + b"data" + struct.pack("<I", data))


def _sf_kwargs(fmt: AudioFormat) -> dict:
    # Constant bit rate keeps every MP3 frame valid even when the closing header rewrite is dropped.
    if fmt.name == "mp3":
        return {"bitrate_mode": "CONSTANT", "compression_level": MP3_COMPRESSION}
    return {}


def encode_full(wav: np.ndarray, sr: int, fmt_name: str) -> bytes:
    """Encode a whole utterance (float32 [T]) to a complete file in `fmt_name`."""
    fmt = FORMATS[fmt_name]
    wav = check_finite(np.asarray(wav, dtype=np.float32).reshape(-1), "synthesized audio")
    if fmt.name in RAW_STREAM_FORMATS:  # the same samples, bit for bit, as the streamed forms
        pcm = to_pcm16(wav)
        return pcm if fmt.name == "pcm" else wav_header(sr, len(pcm)) + pcm
    out_sr = output_rate(fmt.name, sr)
    if out_sr != sr:
        wav = soxr.resample(wav, sr, out_sr, quality="HQ").astype(np.float32)
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=out_sr, channels=1, format=fmt.sf_format,
                      subtype=fmt.sf_subtype, **_sf_kwargs(fmt)) as f:
        f.write(np.clip(wav, -1.0, 1.0))
    return buf.getvalue()


class _AppendOnlySink(io.RawIOBase):
    """A file object for libsndfile that hands out what was written and never goes back.

    Encoders that seek back on close (to patch a header) have those late writes dropped: the bytes
    they would patch are already on the wire.
    """

    def __init__(self) -> None:
        self._pos = 0
        self._pending: list[bytes] = []
        self._rewinding = False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if target != self._pos:
            self._rewinding = True  # a header patch: what follows rewrites sent bytes
        return self._pos

    def write(self, data) -> int:
        data = bytes(data)
        if not self._rewinding:
            self._pending.append(data)
            self._pos += len(data)
        return len(data)

    def take(self) -> bytes:
        out, self._pending = b"".join(self._pending), []
        return out


class StreamEncoder:
    """Encode float32 chunks as they arrive; `feed` and `finish` return the bytes ready to send.

    Owned by one thread at a time (the generation thread), like the synthesizer's iterator.
    """

    def __init__(self, fmt_name: str, sr: int) -> None:
        fmt = FORMATS[fmt_name]
        if not fmt.streamable:
            raise ConfigError(f"{fmt_name} cannot be streamed")
        self.fmt, self.sr, self.out_sr = fmt, sr, output_rate(fmt_name, sr)
        self._started = False
        self._resampler = (soxr.ResampleStream(sr, self.out_sr, 1, dtype="float32", quality="HQ")
                           if self.out_sr != sr else None)
        self._sink: _AppendOnlySink | None = None
        self._file: sf.SoundFile | None = None
        if fmt.name not in RAW_STREAM_FORMATS:
            self._sink = _AppendOnlySink()
            self._file = sf.SoundFile(self._sink, "w", samplerate=self.out_sr, channels=1,
                                      format=fmt.sf_format, subtype=fmt.sf_subtype, **_sf_kwargs(fmt))

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return wav_header(self.sr, None) if self.fmt.name == "wav" else b""

    def feed(self, chunk: np.ndarray) -> bytes:
        chunk = check_finite(np.asarray(chunk, dtype=np.float32).reshape(-1), "synthesized chunk")
        head = self._header()
        if self._file is None:
            return head + to_pcm16(chunk)
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk, last=False)
        if chunk.size:
            self._file.write(np.clip(chunk, -1.0, 1.0))
        return head + self._sink.take()

    def finish(self) -> bytes:
        head = self._header()
        if self._file is None:
            return head
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                self._file.write(np.clip(tail, -1.0, 1.0))
        self._file.close()
        return head + self._sink.take()


@functools.cache
def encodable_formats() -> tuple[str, ...]:
    """Formats this machine's libsndfile really encodes (probed once with a short tone)."""
    tone = (0.1 * np.sin(np.arange(PROBE_SR // 10) * 2 * np.pi * 440 / PROBE_SR)).astype(np.float32)
    ok = []
    for name, fmt in FORMATS.items():
        if fmt.sf_format is None:
            ok.append(name)
            continue
        try:
            if fmt.sf_subtype not in sf.available_subtypes(fmt.sf_format):
                continue
            data = encode_full(tone, PROBE_SR, name)
            if fmt.streamable:
                enc = StreamEncoder(name, PROBE_SR)
                data = enc.feed(tone) + enc.finish()
            if data:
                ok.append(name)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
            continue
    return tuple(ok)

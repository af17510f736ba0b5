import numpy as np
import pytest
import soundfile as sf
import torch

from codectts.audio import MelConfig, MelSpectrogram, load_audio, mel_preset, resample, save_wav
from codectts.errors import AudioError, ConfigError


def test_sine_peaks_in_expected_mel_bin(sine):
    cfg = mel_preset("vocoder")
    import librosa

    centers = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    for freq in (300.0, 1000.0, 3000.0):
        mel = MelSpectrogram(cfg)(torch.from_numpy(sine(freq))[None])[0]
        peak = int(mel[:, 5:-5].mean(1).argmax())
        assert abs(peak - int(np.argmin(np.abs(centers - freq)))) <= 1


@pytest.mark.parametrize("n", [1, 255, 256, 257, 22050])
def test_frames_are_hop_aligned(n):
    cfg = mel_preset("vocoder")
    mel = MelSpectrogram(cfg)(torch.zeros(2, n))
    assert mel.shape == (2, 80, -(-n // 256))
    assert torch.allclose(mel, torch.full_like(mel, cfg.log_min))


def test_seed_preset_is_12_5_hz_128_bins():
    cfg = mel_preset("seed")
    assert cfg.frame_rate == 12.5 and cfg.n_mels == 128 and cfg.sample_rate == 16000


def test_bad_configs():
    with pytest.raises(ConfigError):
        MelConfig(win_length=2048, n_fft=1024)
    with pytest.raises(ConfigError):
        MelConfig(sample_rate=16000, fmax=9000)
    with pytest.raises(ConfigError):
        mel_preset("nope")
    with pytest.raises(AudioError):
        MelSpectrogram(mel_preset("vocoder"))(torch.zeros(1, 0))


def test_load_resample_and_save_roundtrip(tmp_path, sine):
    stereo = np.stack([sine(440, 44100), sine(440, 44100)], 1)
    sf.write(tmp_path / "a.flac", stereo, 44100)
    wav, sr = load_audio(tmp_path / "a.flac", sr=22050)
    assert sr == 22050 and wav.ndim == 1 and abs(len(wav) - 11025) <= 2
    save_wav(tmp_path / "b.wav", wav, sr)
    back, sr2 = load_audio(tmp_path / "b.wav")
    assert sr2 == 22050 and np.abs(back - wav).max() < 1e-3
    assert len(resample(wav, 22050, 16000)) == pytest.approx(8000, abs=2)


def test_bad_audio_gives_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(tmp_path / "junk.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_atomic_writes_get_normal_permissions(tmp_path):
    """mkstemp's private 0600 must not leak into results a user (or a web server) reads."""
    import os

    from codectts.fileio import FILE_MODE, atomic_write_bytes

    atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == FILE_MODE

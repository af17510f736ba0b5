import pytest

from codectts.errors import ConfigError, TextError
from codectts.models.length import (
    CharRateLength,
    LengthSource,
    count_chars,
    length_source_from_dict,
    register_length_source,
)
from codectts.models.speed import MAX_SPEED, MIN_SPEED


def test_seed_heuristic_is_three_frames_per_char_at_mimi_rate():
    src = CharRateLength(frame_rate=12.5)
    assert src.n_frames("hello") == 15  # the seed's example: 5 chars x 3
    assert isinstance(src, LengthSource)


def test_rate_scales_with_codec_frame_rate_and_speed():
    slow, fast = CharRateLength(frame_rate=12.5), CharRateLength(frame_rate=25.0)
    text = "The quick brown fox."
    assert fast.n_frames(text) == 2 * slow.n_frames(text)
    assert slow.n_frames(text, speed=2.0) == round(slow.n_frames(text) / 2)
    assert slow.n_frames(text, speed=0.5) == 2 * slow.n_frames(text)


def test_counts_normalised_characters():
    # numbers are spoken as words, so they count as the words' characters
    assert count_chars("7") == len("seven")
    assert CharRateLength(frame_rate=12.5).n_frames("  hi  ") == 6


@pytest.mark.parametrize("speed", [0.0, -1.0, MIN_SPEED / 2, MAX_SPEED * 2, float("nan"), float("inf"), "fast"])
def test_speed_out_of_range_is_a_clear_error(speed):
    with pytest.raises(ConfigError, match="speed"):
        CharRateLength(frame_rate=12.5).n_frames("hello", speed=speed)


def test_limits_and_empty_text():
    src = CharRateLength(frame_rate=12.5, min_frames=4, max_frames=20)
    assert src.n_frames("a") == 4
    assert src.n_frames("a long sentence that would need far more frames") == 20
    with pytest.raises(TextError):
        src.n_frames("   ")
    with pytest.raises(ConfigError):
        CharRateLength(frame_rate=0)
    with pytest.raises(ConfigError):
        CharRateLength(frame_rate=10, min_frames=5, max_frames=2)


def test_fit_is_ratio_of_totals():
    pairs = [("abcd", 8), ("abcdefgh", 32), ("", 10), ("x", 0)]  # empty text / zero frames ignored
    src = CharRateLength.fit(pairs, frame_rate=20.0)
    assert src.frames_per_char == pytest.approx(40 / 12)
    assert src.n_frames("abc") == round(3 * 40 / 12)
    with pytest.raises(ConfigError):
        CharRateLength.fit([("", 3)], frame_rate=20.0)


def test_round_trip_and_registry():
    src = CharRateLength(frame_rate=21.5, seconds_per_char=0.07, max_frames=300)
    again = length_source_from_dict(src.to_dict())
    assert again == src
    with pytest.raises(ConfigError, match="unknown length source"):
        length_source_from_dict({"kind": "nope"})

    class Fixed:
        def __init__(self, n):
            self.n = n

        def n_frames(self, text, speed=1.0):
            return self.n

    register_length_source("fixed_test", lambda d, root=None: Fixed(d["n"]))
    assert length_source_from_dict({"kind": "fixed_test", "n": 7}).n_frames("anything") == 7

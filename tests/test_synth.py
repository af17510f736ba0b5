"""Synthesizer and CLI on a tiny voice assembled in the test from random-initialised real parts."""
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codectts.errors import CheckpointError, CodecTTSError, ConfigError, TextError


@pytest.fixture(scope="module")
def tiny_voice(tmp_path_factory, tiny_mel_codec):
    from codectts.infer.packaging import build_voice
    from codectts.models.duration import DurationConfig, DurationModel
    from codectts.models.talker import Talker, TalkerConfig
    from codectts.text.tokenizers import PhonemeTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("parts")
    codec = tiny_mel_codec()
    codec.save(d / "codec")
    vocab = PhonemeTokenizer().vocab_size
    talker = Talker(TalkerConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, n_codebooks=4,
                                 codebook_size=64, conditioning="aligned", text_vocab=vocab, text_layers=1,
                                 depth_heads=True))
    talker.save(d / "talker")
    dur = DurationModel(DurationConfig(text_vocab=vocab, dim=32, n_layers=1, n_heads=2, ffn_dim=64,
                                       frame_rate=codec.frame_rate))
    torch.nn.init.constant_(dur.head.bias, 1.0)  # ~1.7 frames per phoneme
    dur.save(d / "duration")
    out = tmp_path_factory.mktemp("voices") / "tiny"
    build_voice(out, name="tiny", talker=d / "talker", codec=d / "codec", duration=d / "duration",
                description="random weights, for tests")
    return out


def test_synthesize_and_stream(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    assert s.sample_rate == 22050 and s.name == "tiny"
    wav, sr = s.synthesize("Hello world. Second sentence here!", seed=1)
    assert wav.dtype == np.float32 and np.isfinite(wav).all() and np.abs(wav).max() <= 1.0
    chunks = list(s.stream("Hello world. Second sentence here!", seed=1, chunk_frames=4))
    assert len(chunks) > 2
    assert sum(len(c) for c in chunks) == len(wav)  # same codes, same length; pause included


def test_stream_first_chunk_arrives_before_the_end(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    text = "This sentence is long enough to need many frames of audio in total."
    it = s.stream(text, seed=0, chunk_frames=4)
    first = next(it)
    rest = sum(len(c) for c in it)
    assert 0 < len(first) < rest


def test_synthesize_stops_when_asked(tiny_voice):
    """The server's cancellation hook: asked before each sentence and each chunk of frames; True ends
    generation early."""
    from codectts.errors import GenerationError
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    text = "This is the first sentence here. This is the second sentence here. And this is the third one."
    asked = []

    def stop_at_third_question() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(GenerationError, match="sentence 1"):
        s.synthesize(text, seed=1, should_stop=stop_at_third_question)
    assert len(asked) == 3
    a, _ = s.synthesize(text, seed=1, should_stop=lambda: False)
    b, _ = s.synthesize(text, seed=1)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_batched_voice_gives_the_same_audio_and_stops(tiny_voice, backend, monkeypatch):
    """batch=N (the server's shared decode steps), on torch and on the frame graph: concurrent requests
    get the audio they get alone, whole and streamed; a stopped request leaves without disturbing the others.
    The frame graph is batched only for more requests than cores."""
    import threading

    from codectts.errors import GenerationError
    from codectts.infer import Synthesizer, synthesizer

    monkeypatch.setattr(synthesizer.os, "cpu_count", lambda: 2)
    if backend != "torch":
        assert Synthesizer.load(tiny_voice, backend=backend, batch=2).engine.batcher is None

    alone = Synthesizer.load(tiny_voice, backend=backend)
    shared = Synthesizer.load(tiny_voice, backend=backend, batch=4)
    texts = ["This is the first sentence here. And a second one follows it.", "Testing one two three four five.",
             "Another request with other words in it, said at the same time."]
    want = [alone.synthesize(t, seed=i)[0] for i, t in enumerate(texts)]
    want[1] = np.concatenate(list(alone.stream(texts[1], seed=1, chunk_frames=4)))  # streamed vocoding differs
    got: dict = {}

    def whole(i):
        got[i] = shared.synthesize(texts[i], seed=i)[0]

    def streamed(i):
        got[i] = np.concatenate(list(shared.stream(texts[i], seed=i, chunk_frames=4)))

    def stopped():
        try:
            shared.synthesize(texts[0] * 3, seed=9, should_stop=lambda: bool(got))
        except GenerationError as e:
            got["stopped"] = e

    threads = [threading.Thread(target=f, args=a) for f, a in ((whole, (0,)), (streamed, (1,)), (whole, (2,)))]
    threads.append(threading.Thread(target=stopped))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(3):
        assert np.array_equal(got[i], want[i]), i
    assert isinstance(got["stopped"], GenerationError)
    assert shared.engine.batcher.steps < shared.engine.batcher.rows_stepped  # steps were shared
    assert Synthesizer.load(tiny_voice, backend=backend, batch=0).engine.batcher is None


def test_same_seed_same_audio_and_speed(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    a, _ = s.synthesize("Testing one two three.", seed=5)
    b, _ = s.synthesize("Testing one two three.", seed=5)
    assert np.array_equal(a, b)
    slow, _ = s.synthesize("Testing one two three.", seed=5, speed=0.5)
    assert len(slow) > 1.5 * len(a)


def test_bad_text_and_long_text(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    for bad in ("", "   ", "\U0001F600\U0001F600"):
        with pytest.raises(TextError):
            s.synthesize(bad)
    long = " ".join(["A short sentence."] * 60)
    n = sum(len(c) for c in s.stream(long, temperature=0))
    assert n > 60 * 0.2 * s.sample_rate


def test_broken_voices_fail_at_load(tiny_voice, tmp_path):
    import shutil

    from codectts.infer import Synthesizer

    broken = tmp_path / "broken"
    shutil.copytree(tiny_voice, broken)
    shutil.rmtree(broken / "duration")
    with pytest.raises(ConfigError, match="missing part 'duration'"):
        Synthesizer.load(broken)
    meta = json.loads((tiny_voice / "voice.json").read_text())
    shutil.copytree(tiny_voice / "duration", broken / "duration")
    meta["codec"]["path"] = "talker"  # a talker where the codec should be
    (broken / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="holds a 'talker', expected a 'mel_rvq_codec'"):
        Synthesizer.load(broken)
    with pytest.raises(ConfigError, match="not found"):
        Synthesizer.load("no-such-voice")


def test_cli_say_roundtrip(tiny_voice, tmp_path):
    out = tmp_path / "x.wav"
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "Hello there.", "--voice", str(tiny_voice),
                        "-o", str(out), "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    wav, sr = sf.read(out)
    assert sr == 22050 and len(wav) > 0
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "-", "--voice", str(tiny_voice), "-o", "-"],
                       input=b"From standard input.", capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout[:4] == b"RIFF"
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "   ", "--voice", str(tiny_voice)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_shipped_default_voice_speaks():
    """The voice inside the package loads without training or network and makes plausible audio."""
    from codectts.infer import DEFAULT_VOICE, Synthesizer

    s = Synthesizer.load()
    assert s.name == DEFAULT_VOICE == "joe-trm"
    wav, sr = s.synthesize("Hello, this is a test.", seed=0)
    assert sr == 22050 and 0.6 * sr < len(wav) < 4 * sr
    assert np.abs(wav).max() > 0.05 and np.isfinite(wav).all()
    # soft decoding draws nothing: its one-seed WER is the mean over seeds (model card)
    again, _ = s.synthesize("Hello, this is a test.", seed=1, temperature=0.9)
    assert np.array_equal(wav, again)


def test_voice_context_windows_reach_the_talker(tiny_voice, tmp_path):
    """make-voice --context-frames/--context-phonemes -> voice.json "context" -> the talker's attention spans."""
    from codectts.infer import Synthesizer
    from codectts.infer.packaging import build_voice

    out = build_voice(tmp_path / "ctx", name="ctx", talker=tiny_voice / "talker", codec=tiny_voice / "codec",
                      duration=tiny_voice / "duration", context={"frames": 6, "phonemes": 3})
    assert json.loads((out / "voice.json").read_text())["context"] == {"frames": 6, "phonemes": 3}
    s, plain = Synthesizer.load(out), Synthesizer.load(tiny_voice)
    assert (s.engine.window, s.engine.text_window) == (6, 3)
    text = "A sentence long enough for the windows to matter, with many phonemes in it."
    a, b = s.sentence_codes(text, seed=0), plain.sentence_codes(text, seed=0)
    assert a.shape == b.shape and not torch.equal(a, b)  # same length (durations), other attention


# ---- hostile inputs (issue 19): every bad input is a CodecTTSError, checked where it enters -------------------
@pytest.fixture(scope="module")
def synth(tiny_voice):
    from codectts.infer import Synthesizer

    return Synthesizer.load(tiny_voice)


BAD_OPTIONS = [
    ("temperature", math.nan), ("temperature", math.inf), ("temperature", -0.1), ("temperature", 11.0),
    ("temperature", "0.5"), ("temperature", True), ("top_k", 0), ("top_k", 1.5), ("top_k", "5"), ("top_k", True),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", math.nan), ("top_p", "0.9"), ("seed", -1), ("seed", 2**63),
    ("seed", 2**64 + 1), ("seed", 1.0), ("seed", "1"), ("seed", True), ("speed", math.nan), ("speed", 0.0),
    ("speed", 1e300), ("speed", "1"), ("speed", None), ("speed", -1.0),
]


@pytest.mark.parametrize("name, value", BAD_OPTIONS)
def test_bad_options_are_config_errors(name, value):
    from codectts.infer.options import check_options
    from codectts.models.sampling import SamplingConfig

    with pytest.raises(ConfigError, match=name):
        check_options(SamplingConfig(), **{name: value})


def test_good_options_and_per_sentence_seeds():
    from codectts.infer.options import SEED_RANGE, check_options
    from codectts.models.sampling import SamplingConfig

    opts = check_options(SamplingConfig(), speed=np.float32(1.5), temperature=np.float64(0.7), top_k=np.int64(5),
                         top_p=1, seed=np.int64(3))
    assert (opts.speed, opts.sampling.temperature, opts.sampling.top_k, opts.sampling.top_p) == (1.5, 0.7, 5, 1.0)
    assert check_options(SamplingConfig(), temperature=1e-300).sampling.temperature == 0.0  # the limit: greedy
    last = check_options(SamplingConfig(), seed=SEED_RANGE - 1)
    assert last.sentence_seed(0) == SEED_RANGE - 1 and last.sentence_seed(1) == 0  # wraps, no overflow
    assert check_options(SamplingConfig(), seed=None).sentence_seed(5) == 0


def test_tiny_top_p_keeps_the_best_token(synth):
    """top_p = 1e-300 rounds to 0 in float32: the nucleus must still hold the most likely token (was a
    GenerationError: every logit -inf, NaN probabilities; the server answered 500)."""
    from codectts.models.sampling import filter_logits

    logits = torch.tensor([[0.1, 2.0, -1.0]])
    assert torch.isfinite(filter_logits(logits, top_p=1e-300)).tolist() == [[False, True, False]]
    wav, _ = synth.synthesize("Hello.", top_p=1e-300, seed=0)
    assert np.isfinite(wav).all() and len(wav) > 0


def test_options_are_checked_before_any_work(synth):
    with pytest.raises(ConfigError, match="temperature"):
        synth.synthesize("Hello.", temperature=math.nan)
    with pytest.raises(ConfigError, match="seed"):
        synth.stream("Hello.", seed=2**70)  # at the call, not at the first chunk
    with pytest.raises(ConfigError, match="chunk_frames"):
        synth.stream("Hello.", chunk_frames=0)
    with pytest.raises(ConfigError, match="top_k"):
        synth.sentence_codes("Hello.", top_k="all")
    with pytest.raises(ConfigError, match="reference"):
        synth.synthesize("Hello.", reference="someone.wav")


def test_seed_at_the_top_of_int64_spans_sentences(synth):
    wav, _ = synth.synthesize("One. Two. Three.", seed=2**63 - 1, temperature=0.5)
    assert np.isfinite(wav).all() and len(wav) > 0


def test_requests_over_the_limits_are_text_errors(tiny_voice, synth):
    from codectts.infer import Synthesizer
    from codectts.infer.synthesizer import Limits

    with pytest.raises(TextError, match="28671 characters.*limit is 20000"):
        synth.synthesize("#" * 4096)  # short raw text that normalises to "number" 4,096 times
    with pytest.raises(TextError, match="limit is 20000"):
        synth.stream("a" * 20_001)
    small = Synthesizer.load(tiny_voice, limits=Limits(max_audio_s=2.0))
    text = " ".join(["A sentence of a few words."] * 8)
    with pytest.raises(TextError, match="max_audio_s"):
        small.synthesize(text)
    with pytest.raises(TextError, match="max_audio_s"):
        for _ in small.stream(text, chunk_frames=64):
            pass
    for bad in ({"max_chars": 0}, {"max_chars": 1.5}, {"max_audio_s": math.inf}, {"max_audio_s": -1}):
        with pytest.raises(ConfigError):
            Limits(**bad)


def test_non_latin_text_is_split_by_phoneme_count(synth, monkeypatch):
    """Japanese reads as ~16 phonemes a character in the English phonemiser: 100 characters exceed the
    duration model's 1,024 positions, so sentences are halved until each piece fits (phonemes and frames)."""
    engine = synth.engine
    text = "こんにちは" * 20
    with pytest.raises(TextError, match="phonemes"):
        synth.sentence_codes(text)  # one pass is refused as text, not a model error
    plans = [p for sent in synth.sentences(text) for p in synth.plan(sent)]
    assert len(plans) > len(synth.sentences(text))
    assert all(p.ids.shape[1] <= engine.max_units for p in plans)
    slow = [p for sent in synth.sentences(text) for p in synth.plan(sent, speed=0.25)]
    assert all(int(p.durations.sum()) <= engine.model.cfg.max_seq_len for p in slow)
    monkeypatch.setattr(engine, "max_units", 64)  # end to end, on a short text: pieces of <= 64 phonemes
    wav, _ = synth.synthesize("こんにちは" * 3, temperature=0)
    assert np.isfinite(wav).all() and len(wav) > 0
    assert len(synth.plan("こんにちは" * 3)) >= 4


SPEECHY = st.one_of(st.text(max_size=60), st.from_regex(r"[A-Za-z0-9 ,.$%#:]{0,60}", fullmatch=True),
                    st.integers(min_value=0, max_value=10**500).map(str),
                    st.sampled_from(["こんにちは" * 30, "\x00" * 9]))
ANY = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(text=st.lists(SPEECHY, min_size=1, max_size=4).map(" ".join), speed=ANY, temperature=ANY, top_k=ANY,
       top_p=ANY, seed=ANY)
def test_hostile_text_and_options_raise_only_codectts_errors(synth, text, speed, temperature, top_k, top_p, seed):
    """Random unicode, numbers and option values through options, normalise, split, tokenise and plan."""
    try:
        opts = synth.options(1.0 if speed is None else speed, temperature, top_k, top_p, seed)
    except CodecTTSError:
        opts = synth.options()
    try:
        for sent in synth.sentences(text)[:3]:
            for plan in synth.plan(sent, opts.speed):
                assert plan.ids.shape[1] <= synth.engine.max_units
    except CodecTTSError:
        pass


def _edit_voice(src, dst, edit):
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / "voice.json").read_text())
    edit(meta)
    (dst / "voice.json").write_text(json.dumps(meta))
    return dst


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        d = meta
        for k in parents:
            d = d.setdefault(k, {})
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return edit


@pytest.mark.parametrize("field, value, match", [
    ("sentence_pause_s", -0.5, "sentence_pause_s"), ("sentence_pause_s", 1e9, "sentence_pause_s"),
    ("sentence_pause_s", "0.2", "sentence_pause_s"), ("sentence_pause_s", None, "sentence_pause_s"),
    ("sampling.temperature", "hot", "temperature"), ("sampling.top_k", 0, "top_k"), ("sampling.top_p", 2, "top_p"),
    ("sampling", [0.5], "sampling"), ("model.type", "gan", "type"), ("model", KeyError, "model"),
    ("model.path", 3, "path"), ("codec.type", None, "type"), ("codec.path", KeyError, "path"),
    ("context.frames", 0, "frames"), ("context.frames", "128", "frames"), ("name", 3, "name"), ("name", " ", "name"),
    ("tokenizer", KeyError, "tokenizer"), ("vocoder", KeyError, "vocoder"), ("description", ["x"], "description"),
    ("loudness", 3, "loudness"), ("format_version", 2, "format_version"), ("format_version", "1", "format_version"),
    ("duration", "duration", "duration"),
])
def test_voice_json_fields_are_checked(tiny_voice, tmp_path, field, value, match):
    from codectts.infer import Synthesizer

    bad = _edit_voice(tiny_voice, tmp_path / "bad", _set(field, value))
    with pytest.raises(ConfigError, match=match):
        Synthesizer.load(bad)


@pytest.mark.parametrize("field, value", [
    ("model.path", "../outside"), ("model.path", "/etc"), ("codec.path", "codec/../../x"),
    ("tokenizer", "../tokenizer.json"), ("duration.path", "/tmp"), ("vocoder", {"type": "hifigan", "path": "/v"}),
])
def test_part_paths_stay_inside_the_voice(tiny_voice, tmp_path, field, value):
    from codectts.infer import Synthesizer

    bad = _edit_voice(tiny_voice, tmp_path / "bad", _set(field, value))
    with pytest.raises(ConfigError, match="inside the voice folder|outside the voice folder"):
        Synthesizer.load(bad)


def test_symlinked_part_outside_the_voice_is_refused(tiny_voice, tmp_path):
    import shutil

    from codectts.infer import Synthesizer

    bad = _edit_voice(tiny_voice, tmp_path / "bad", lambda m: None)
    shutil.move(bad / "talker", tmp_path / "elsewhere")
    (bad / "talker").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="outside the voice folder"):
        Synthesizer.load(bad)


@pytest.mark.parametrize("vocoder", [
    "griffinlim", {"type": "griffinlim"}, {"type": "griffinlim", "mel": {"n_mels": "x"}},
    {"type": "griffinlim", "mel": {}, "n_iter": "many"}, {"type": "wavenet"},
    {"type": "griffinlim", "mel": {}, "momentum": 2},
])
def test_bad_vocoder_specs_are_config_errors(tiny_voice, tmp_path, vocoder):
    from codectts.infer import Synthesizer

    def edit(meta):
        if isinstance(vocoder, dict) and "mel" in vocoder and vocoder["mel"] == {}:
            vocoder["mel"] = meta["vocoder"]["mel"]
        meta["vocoder"] = vocoder

    bad = _edit_voice(tiny_voice, tmp_path / "bad", edit)
    with pytest.raises(ConfigError):
        Synthesizer.load(bad)


def test_nan_weights_in_a_voice_are_refused(tiny_voice, tmp_path):
    from safetensors.torch import load_file, save_file

    from codectts.infer import Synthesizer

    bad = _edit_voice(tiny_voice, tmp_path / "bad", lambda m: None)
    sd = load_file(str(bad / "talker" / "model.safetensors"))
    name = next(k for k, v in sd.items() if v.is_floating_point())
    sd[name] = sd[name].clone().fill_(float("nan"))
    save_file(sd, str(bad / "talker" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="NaN"):
        Synthesizer.load(bad)


def test_cli_prints_bad_options_as_one_line(tiny_voice):
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "Hi.", "--voice", str(tiny_voice), "-o", "-",
                        "--temperature", "nan"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "temperature" in r.stderr and "Traceback" not in r.stderr


def test_bfloat16_weights_option(tiny_voice, tmp_path):
    """weights='bfloat16' (argument or voice.json) casts only the Talker; same length, finite audio;
    anything but float32/bfloat16 is refused at load."""
    from codectts.infer import Synthesizer
    from codectts.infer.packaging import build_voice

    s, plain = Synthesizer.load(tiny_voice, weights="bfloat16"), Synthesizer.load(tiny_voice, backend="torch")
    assert s.backend == "torch"  # 'auto' keeps a bfloat16 Talker on torch: the ONNX graphs are float32
    assert {p.dtype for p in s.engine.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in s.engine.duration.parameters()} == {torch.float32}
    wav, _ = s.synthesize("Hello world. Second sentence here!", seed=1)
    ref, _ = plain.synthesize("Hello world. Second sentence here!", seed=1)
    assert len(wav) == len(ref) and np.isfinite(wav).all()  # durations come from the float32 duration model
    out = build_voice(tmp_path / "bf", name="bf", talker=tiny_voice / "talker", codec=tiny_voice / "codec",
                      duration=tiny_voice / "duration")
    meta = json.loads((out / "voice.json").read_text())
    (out / "voice.json").write_text(json.dumps({**meta, "weights": "bfloat16"}))
    assert Synthesizer.load(out).engine.model.text_emb.weight.dtype == torch.bfloat16
    assert Synthesizer.load(out, weights="float32", backend="torch").engine.model.text_emb.weight.dtype == torch.float32
    (out / "voice.json").write_text(json.dumps({**meta, "weights": "int8"}))
    with pytest.raises(ConfigError, match="weights"):
        Synthesizer.load(out)
    with pytest.raises(ConfigError, match="weights"):
        Synthesizer.load(tiny_voice, weights="float16")


def test_bfloat16_talker_close_to_float32():
    """The cast model's teacher-forced logits stay within bfloat16 rounding of the float32 ones."""
    import copy

    from codectts.infer.precision import with_weights
    from codectts.models.talker import Talker, preset

    torch.manual_seed(0)
    model = Talker(preset("tiny")).eval()
    for p in model.parameters():  # larger than the init's std 0.02, so logits are not all ~0
        p.data.normal_(0, 0.2)
    half = with_weights(copy.deepcopy(model), "bfloat16")
    codes = torch.randint(0, 16, (2, 2, 12))
    text, durations = torch.randint(1, 151, (2, 5)), torch.full((2, 5), 3)
    lengths = torch.full((2,), 5)
    with torch.no_grad():
        a = model(codes, text=text, text_lengths=lengths, durations=durations).logits
        b = half(codes, text=text, text_lengths=lengths, durations=durations).logits
    for x, y in zip(a, b, strict=True):
        assert y.dtype == torch.bfloat16
        rel = float((x - y.float()).norm() / x.norm())
        assert 0 < rel < 0.05


def test_onnx_backend_speaks_like_torch(tiny_voice, tmp_path, monkeypatch):
    """backend='onnx' gives the torch backend's audio for the same seed, exporting into $CODECTTS_CACHE;
    'onnx-int8' speaks; 'auto' (the default) runs what the voice.json names ('onnx' when it names
    nothing); unknown backends and non-float32 weights are refused at load, and 'auto' falls back to
    torch where ONNX Runtime cannot run."""
    from codectts.infer import Synthesizer

    monkeypatch.setenv("CODECTTS_CACHE", str(tmp_path))
    s, plain = Synthesizer.load(tiny_voice, backend="onnx"), Synthesizer.load(tiny_voice, backend="torch")
    assert (s.backend, plain.backend) == ("onnx", "torch")
    assert len(list((tmp_path / "onnx").glob("talker-*-frame.onnx"))) == 1
    text = "Hello world. Second sentence here!"
    greedy = [x.synthesize(text, seed=1, temperature=0)[0] for x in (s, plain)]
    assert np.array_equal(*greedy)
    assert np.array_equal(np.concatenate(list(s.stream(text, seed=2, chunk_frames=3))),
                          np.concatenate(list(plain.stream(text, seed=2, chunk_frames=3))))
    q = Synthesizer.load(tiny_voice, backend="onnx-int8")  # other codes, the same length (durations)
    assert len(q.synthesize(text, seed=1)[0]) == len(greedy[0])
    assert len(list((tmp_path / "onnx").glob("talker-*-frame-int8.onnx"))) == 1
    auto = Synthesizer.load(tiny_voice)  # no "backend" in its voice.json: float32, the torch audio
    assert auto.backend == "onnx"
    assert np.array_equal(auto.synthesize(text, seed=1)[0], plain.synthesize(text, seed=1)[0])
    named = shutil.copytree(tiny_voice, tmp_path / "named")
    meta = json.loads((named / "voice.json").read_text())
    for choice in ("onnx-int8", "torch"):  # a voice that names its backend gets it
        (named / "voice.json").write_text(json.dumps({**meta, "backend": choice}))
        assert Synthesizer.load(named).backend == choice
    (named / "voice.json").write_text(json.dumps({**meta, "backend": "tensorrt"}))
    with pytest.raises(ConfigError, match="backend"):
        Synthesizer.load(named)
    assert np.array_equal(Synthesizer.load(tiny_voice, backend="onnx-int8").synthesize(text, seed=1)[0],
                          q.synthesize(text, seed=1)[0])
    with pytest.raises(ConfigError, match="backend"):
        Synthesizer.load(tiny_voice, backend="tensorrt")
    with pytest.raises(ConfigError, match="float32"):
        Synthesizer.load(tiny_voice, backend="onnx", weights="bfloat16")
    blocker = tmp_path / "file"  # a cache folder that cannot be made: 'auto' runs on torch, 'onnx' refuses
    blocker.write_text("not a folder")
    monkeypatch.setenv("CODECTTS_CACHE", str(blocker))
    assert Synthesizer.load(tiny_voice).backend == "torch"
    with pytest.raises(ConfigError, match="CODECTTS_CACHE"):
        Synthesizer.load(tiny_voice, backend="onnx")


@pytest.mark.parametrize("sizes", [[1] * 40, [8] * 5, [3, 17, 2, 1, 9, 8], [40]])
def test_codec_mel_stream_equals_whole_decode(tiny_mel_codec, sizes):
    """CodecMelStream: codes pushed in any chunking (its decodes growing after the first) give the
    whole-utterance mel, the first frames as soon as they are final."""
    from codectts.infer.synthesizer import CodecMelStream

    codec = tiny_mel_codec(64).eval()
    assert codec.context_frames > 0
    torch.manual_seed(0)
    codes = torch.randint(0, 64, (1, codec.cfg.n_codebooks, sum(sizes)))
    stream, pieces, at = CodecMelStream(codec), [], 0
    for n in sizes:
        out = stream.push(codes[:, :, at : at + n])
        at += n
        if out is not None:
            pieces.append(out)
        if not pieces:
            assert at <= codec.context_frames  # nothing out only while no frame is final yet
    pieces.append(stream.push(None, final=True))
    with torch.no_grad():
        whole = codec.decode_mel(codes)
    torch.testing.assert_close(torch.cat(pieces, -1), whole, atol=1e-5, rtol=1e-5)

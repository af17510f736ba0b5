"""Hostile inputs through the shipped voice, by the Python API and by the real HTTP server (issue 19).

Sends texts (huge and odd numbers, control characters, non-Latin scripts, symbol floods, random
Unicode), option values (NaN, inf, strings, bools, out-of-range ints and seeds), damaged voice
folders (voice.json fields, part configs, weights, paths out of the folder) and HTTP requests (the
same texts and options as JSON, malformed bodies, wrong content types and hosts) and tallies what
comes back:

    API:    ok (finite audio in [-1, 1]) / codectts error (by class) / other exception / hang
    server: 2xx / 4xx / 5xx / hang (no answer in --timeout) / connection error

The target is 0 "other exception" and 0 5xx. Each request is bounded to --max-audio-s of planned audio
(Limits.max_audio_s: the bound is itself one of the things tested), so the run takes minutes.

    nice -n 10 .venv/bin/python benchmarks/hostile.py --out hostile.json
    nice -n 10 .venv/bin/python benchmarks/hostile.py --only api --quick    # a tenth of the cases

The server runs in a child process on 127.0.0.1 (create_app over the shipped voice, uvicorn with the
limits `codectts serve` uses); requests go one at a time.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, report  # noqa: E402

SHORT = "Hello there."
STARTUP_TIMEOUT_S = 300.0


# ---- hostile texts ------------------------------------------------------------------------------------------------
SCRIPTS = {  # a sample of each script; repeated to the lengths asked for
    "arabic": "مرحبا بالعالم ", "japanese": "こんにちは世界", "chinese": "你好世界我们", "amharic": "ሰላም ለዓለም ",
    "devanagari": "नमस्ते दुनिया ", "thai": "สวัสดีชาวโลก", "korean": "안녕하세요 세계 ", "cyrillic": "Привет мир ",
    "hebrew": "שלום עולם ", "greek": "Γειά σου κόσμε ", "georgian": "გამარჯობა ", "tamil": "வணக்கம் உலகம் ",
    "tibetan": "བཀྲ་ཤིས་བདེ་ལེགས། ", "cuneiform": "𒀀𒀁𒀂𒀃 ", "braille": "⠓⠑⠇⠇⠕ ", "math_bold": "𝐇𝐞𝐥𝐥𝐨 𝐰𝐨𝐫𝐥𝐝 ",
}


def _numbers() -> list[tuple[str, str]]:
    out = [(f"digits_{n}", "9" * n) for n in (15, 16, 305, 306, 400, 1000, 4096, 4301, 5000)]
    out += [(f"ten_pow_{k}", str(10**k)) for k in range(0, 320, 20)]
    out += [
        ("dollars_400", "$" + "9" * 400), ("dollars_5000_cents", "$" + "9" * 5000 + ".99"),
        ("percent_400", "9" * 400 + "%"), ("percent_4096", "1" * 4095 + "%"), ("grouped_120", "1" + ",000" * 120),
        ("grouped_scaled", "$1" + ",000" * 300 + " million"), ("arabic_indic_400", "٩" * 400),
        ("arabic_indic_list", "١,٢,٣"), ("devanagari_digits", "१२३४५ " * 50), ("fullwidth", "１２３４５６"),
        ("mixed_script_digits", "1٢3۴5"), ("ordinal_400", "1" * 400 + "th"), ("ordinal_grouped", "1,000,000th"),
        ("decimal_huge", "1" * 300 + "." + "5" * 300), ("list", "1,2,3"), ("bad_grouping", "1,00,000,0000"),
        ("pounds_scaled", "£1,000,000.5 billion"), ("euro_cents", "€0.999"), ("times", "25:99 99:99 0:00 24:60"),
        ("years", "1990s 2000s 1100s 2099s"), ("signs", "-5 -0 +3 ±7"), ("sci", "1e308 1E-400 0x1F 0b101"),
        ("superscripts", "x² y³ 10⁻⁹"), ("fractions", "½ ¾ ⅞"), ("spaced_digits", "1 2 3 " * 500),
        ("phone", "+1 (555) 123-4567"), ("ip", "192.168.0.1 ::1"), ("version", "v1.2.3.4.5.6.7.8.9"),
        ("percent_only", "%" * 100), ("dollars_only", "$" * 200), ("currencies", "$£€¥₹₿" * 20),
        ("digit_soup", "1,2.3,4.5%6$7" * 100), ("dots", "9." * 2000), ("commas", "1," * 2000),
        ("glued", "abc" + "9" * 400 + "xyz"), ("roman", "MMXXIV XLII"),
    ]
    return out


def _controls() -> list[tuple[str, str]]:
    return [
        ("nul", "Hello\x00world"), ("nul_only", "\x00" * 100), ("c0", "".join(map(chr, range(32))) + "text"),
        ("c1", "".join(map(chr, range(0x80, 0xA0))) + "text"), ("bidi", "\u202eHello\u202c world \u2066x\u2069"),
        ("zero_width", "H\u200be\u200cl\u200dl\u2060o"), ("bom", "\ufeffHello"), ("del", "abc\x7fdef"),
        ("lone_surrogate", "Hello \ud800 world"), ("private_use", "\ue000\uf8ff text"),
        ("noncharacters", "\ufffe\uffff text"), ("tags", "\U000e0001\U000e0041 text \U0010ffff"),
        ("separators", "one\u2028two\u2029three"), ("whitespace_flood", "\t\n\r\v\f" * 100 + "end"),
        ("combining_500", "e" + "\u0301" * 500), ("only_combining", "\u0301" * 100),
        ("zalgo", "".join("z" + "\u0336\u0335\u0334" * 5 for _ in range(100))), ("emoji", "😀" * 100),
        ("emoji_zwj", "👨‍👩‍👧‍👦" * 50), ("flags", "🇺🇸🇬🇧" * 50), ("ansi", "\x1b[31mred\x1b[0m text"),
        ("backspace", "abc\b\b\bxyz"), ("replacement", "\ufffd" * 50), ("ligatures", "ﬁﬂﬀﬃ ﬄ"),
    ]


def _scripts() -> list[tuple[str, str]]:
    out = []
    for name, sample in SCRIPTS.items():
        for n in (80, 300, 1200):
            out.append((f"{name}_{n}", (sample * (n // len(sample) + 1))[:n]))
    return out


def _symbols() -> list[tuple[str, str]]:
    return [
        ("hash_4096", "#" * 4096), ("hash_100", "#" * 100), ("amp", "&" * 1000), ("plus_eq", "+=" * 500),
        ("at", "@" * 500), ("dots_4000", "." * 4000), ("bang_q", "!?" * 1000), ("commas_4000", "," * 4000),
        ("ellipses", "..." * 1000), ("empty", ""), ("spaces", " " * 4096), ("newlines", "\n" * 4096),
        ("dashes", "-" * 4096), ("quotes", "'" * 1000), ("dquotes", '"' * 1000), ("parens", "()" * 1000),
        ("one_word_4096", "A" * 4096), ("a_space", "a " * 2048), ("tiny_sentences", "I. " * 1365),
        ("hello_4096", ("Hello. " * 600)[:4096]), ("abbrev", "Mr. Dr. St. " * 300), ("lexicon", "codectts " * 400),
        ("markup", "<script>alert(1)</script><b>bold</b>"), ("templates", "{{7*7}} ${7*7} %s%s%n %x {0}"),
        ("path", "../../../../etc/passwd"), ("sql", "'; DROP TABLE voices; --"), ("escapes", "\\x00\\n\\u0000"),
        ("json", '{"input": "x", "voice": "../joe"}'), ("url", "https://" + "a" * 3000 + ".com"),
        ("emails", "a@b.c " * 300), ("hashtags", "#tag " * 500), ("long_word_mix", "Supercalifragilistic" * 100),
        ("english_4096", _english(4096)), ("english_20001", _english(20_001)), ("english_100k", _english(100_000)),
        ("caps", "HELLO WORLD " * 200), ("repeated_punct", "Wait" + "!" * 2000), ("unicode_quotes", "“”‘’«»„" * 300),
    ]


def _english(n: int) -> str:
    words = ("the quick brown fox jumps over the lazy dog while seven tired farmers count "
             "their forty-two sheep before the long winter").split()
    rng, out, size = random.Random(n), [], 0
    while size < n:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + "."
        out.append(sentence)
        size += len(sentence) + 1
    return " ".join(out)[:n]


def _random(rng: random.Random, count: int) -> list[tuple[str, str]]:
    planes = [(0x20, 0x7F), (0xA0, 0x2FF), (0x300, 0x36F), (0x370, 0x1FFF), (0x2000, 0x2BFF), (0x3000, 0x9FFF),
              (0xD800, 0xDFFF), (0xE000, 0xFFFF), (0x10000, 0x1FFFF), (0x20000, 0x3FFFF), (0xE0000, 0x10FFFF)]
    out = []
    for i in range(count):
        chars = []
        for _ in range(rng.randint(1, 120)):
            lo, hi = rng.choice(planes)
            chars.append(chr(rng.randint(lo, hi)))
        out.append((f"random_unicode_{i}", "".join(chars)))
    soup = "0123456789,.$£€%#:;-+ st nd rd th million"
    for i in range(count // 2):
        out.append((f"number_soup_{i}", "".join(rng.choice(soup) for _ in range(rng.randint(1, 300)))))
    return out


def hostile_texts(seed: int = 0, n_random: int = 100) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return _numbers() + _controls() + _scripts() + _symbols() + _random(rng, n_random)


# ---- hostile options ------------------------------------------------------------------------------------------
BAD_VALUES = {
    "temperature": [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-300, 1e300, 10.0, 10.5, "0.5", True, [], {}],
    "top_k": [0, -1, 1, 1.5, "5", True, 10**30, 2**63, -(2**63), [5]],
    "top_p": [0.0, -0.1, 1.0, 1.0001, 1e-300, math.nan, "0.9", False],
    "seed": [-1, 0, 2**63 - 1, 2**63, 2**64, 10**100, 1.5, 1.0, "1", True, math.nan],
    "speed": [0.0, -1.0, math.nan, math.inf, 0.24, 0.25, 4.0, 4.01, 1e308, "1", None, True],
}


def hostile_options() -> list[tuple[str, dict]]:
    out = [(f"{k}={v!r}"[:60], {k: v}) for k, values in BAD_VALUES.items() for v in values]
    out += [("all_extreme_ok", {"temperature": 10.0, "top_k": 1, "top_p": 1e-9, "seed": 2**63 - 1, "speed": 4.0}),
            ("greedy_slow", {"temperature": 0.0, "speed": 0.25, "seed": 0}),
            ("seed_wrap_multi", {"seed": 2**63 - 1, "text": "One. Two. Three. Four."})]
    return out


# ---- damaged voices ---------------------------------------------------------------------------------------------
def _set(meta: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for k in parents:
        meta = meta.setdefault(k, {})
    if value is KeyError:
        meta.pop(last, None)
    else:
        meta[last] = value


VOICE_EDITS = [  # (name, key path in voice.json, value)
    ("pause_negative", "sentence_pause_s", -1.0), ("pause_huge", "sentence_pause_s", 1e9),
    ("pause_string", "sentence_pause_s", "0.2"), ("pause_null", "sentence_pause_s", None),
    ("temp_string", "sampling.temperature", "hot"), ("temp_negative", "sampling.temperature", -1),
    ("top_k_zero", "sampling.top_k", 0), ("top_k_float", "sampling.top_k", 2.5), ("top_p_big", "sampling.top_p", 7),
    ("sampling_list", "sampling", [1]), ("sampling_extra", "sampling.beam", 4), ("model_type", "model.type", "gan"),
    ("model_missing", "model", KeyError), ("model_path_int", "model.path", 3), ("model_path_abs", "model.path", "/etc"),
    ("model_path_up", "model.path", "../../talker"), ("codec_type_null", "codec.type", None),
    ("codec_path_missing", "codec.path", KeyError), ("codec_path_up", "codec.path", "codec/../../x"),
    ("codec_is_talker", "codec.path", "talker"), ("duration_string", "duration", "duration"),
    ("duration_missing", "duration", KeyError), ("duration_path_tmp", "duration.path", "/tmp"),
    ("context_zero", "context.frames", 0), ("context_string", "context.phonemes", "64"),
    ("name_int", "name", 3), ("name_blank", "name", " "), ("tokenizer_missing", "tokenizer", KeyError),
    ("tokenizer_up", "tokenizer", "../tokenizer.json"), ("tokenizer_is_dir", "tokenizer", "talker"),
    ("vocoder_missing", "vocoder", KeyError), ("vocoder_string", "vocoder", "griffinlim"),
    ("vocoder_unknown", "vocoder.type", "wavenet"), ("vocoder_n_iter", "vocoder.n_iter", "many"),
    ("vocoder_momentum", "vocoder.momentum", 2.0), ("vocoder_mel_bins", "vocoder.mel.n_mels", "80"),
    ("vocoder_mel_zero_hop", "vocoder.mel.hop_length", 0), ("vocoder_hifigan_abs", "vocoder", {"type": "hifigan",
                                                                                               "path": "/x"}),
    ("description_list", "description", ["x"]), ("unknown_key", "loudness", 3), ("format_2", "format_version", 2),
    ("format_string", "format_version", "1"), ("sample_rate_negative", "sample_rate", -22050),
]
PART_EDITS = [  # (name, part folder, config key, value)
    ("talker_dim_string", "talker", "dim", "256"), ("talker_heads_zero", "talker", "n_heads", 0),
    ("talker_layers_float", "talker", "n_layers", 1.5), ("talker_codebooks", "talker", "n_codebooks", 8),
    ("talker_vocab_small", "talker", "text_vocab", 3), ("talker_max_seq_len_null", "talker", "max_seq_len", None),
    ("talker_unknown", "talker", "flash", True), ("talker_conditioning", "talker", "conditioning", "none"),
    ("duration_rate_string", "duration", "frame_rate", "fast"), ("duration_rate_nan", "duration", "frame_rate",
                                                                 math.nan),
    ("duration_dim_negative", "duration", "dim", -4), ("codec_stack_zero", "codec", "stack", 0),
    ("codec_arch", "codec", "arch", "transformer"), ("codec_mel_null", "codec", "mel", None),
]
FILE_EDITS = [  # (name, file in the voice, new content or a function of the old bytes)
    ("voice_json_garbage", "voice.json", b"{not json"), ("voice_json_array", "voice.json", b"[1, 2]"),
    ("voice_json_deep", "voice.json", b"[" * 100_000 + b"]" * 100_000),
    ("voice_json_binary", "voice.json", b"\xff\xfe"),
    ("tokenizer_garbage", "tokenizer.json", b"{"), ("tokenizer_kind", "tokenizer.json", b'{"kind": "bpe"}'),
    ("tokenizer_symbols", "tokenizer.json", b'{"kind": "phoneme", "symbols": 3}'),
    ("tokenizer_espeak_voice", "tokenizer.json", None),  # filled in below: an espeak voice that does not exist
    ("weights_truncated", "talker/model.safetensors", lambda b: b[: len(b) // 2]),
    ("weights_empty", "duration/model.safetensors", b""), ("weights_nan", "talker/model.safetensors", "nan"),
    ("weights_inf", "codec/model.safetensors", "inf"), ("part_config_garbage", "talker/config.json", b"]"),
    ("part_config_type", "duration/config.json", lambda b: b.replace(b'"duration"', b'"talker"', 1)),
    ("part_config_version", "codec/config.json", lambda b: b.replace(b'"format_version": 1', b'"format_version": 9')),
]


def _poison(data: bytes, value: float) -> bytes:
    from safetensors.torch import load, save

    sd = load(data)
    name = next(k for k, v in sd.items() if v.is_floating_point())
    sd[name] = sd[name].clone().fill_(value)
    return save(sd)


def damaged_voices(src: Path, work: Path) -> Iterator[tuple[str, Path]]:
    """Copies of the voice (files hard-linked; an edited file is replaced, never written through the link)."""
    def link(a, b) -> None:
        try:
            os.link(a, b)
        except OSError:  # another file system
            shutil.copy2(a, b)

    def fresh(name: str) -> Path:
        dst = work / name
        shutil.copytree(src, dst, copy_function=link)
        return dst

    def replace(path: Path, data: bytes) -> None:
        path.unlink()
        path.write_bytes(data)

    for name, key, value in VOICE_EDITS:
        dst = fresh(name)
        meta = json.loads((dst / "voice.json").read_text())
        _set(meta, key, value)
        replace(dst / "voice.json", json.dumps(meta).encode())
        yield name, dst
    for name, part, key, value in PART_EDITS:
        dst = fresh(name)
        meta = json.loads((dst / part / "config.json").read_text())
        meta["config"][key] = value
        replace(dst / part / "config.json", json.dumps(meta).encode())
        yield name, dst
    for name, rel, content in FILE_EDITS:
        dst = fresh(name)
        old = (dst / rel).read_bytes()
        if name == "tokenizer_espeak_voice":
            tok = json.loads(old)
            data = json.dumps({**tok, "voice": "xx-nowhere"}).encode()
        elif content in ("nan", "inf"):
            data = _poison(old, math.nan if content == "nan" else math.inf)
        else:
            data = content(old) if callable(content) else content
        replace(dst / rel, data)
        yield name, dst
    dst = fresh("symlink_out")  # a part that is a symlink to a folder outside the voice
    shutil.move(str(dst / "duration"), str(work / "outside_duration"))
    (dst / "duration").symlink_to(work / "outside_duration")
    yield "symlink_out", dst
    dst = fresh("part_missing")
    shutil.rmtree(dst / "codec")
    yield "part_missing", dst
    yield "not_a_voice", work / "outside_duration"
    yield "no_such_voice", work / "nowhere"
    yield "voice_name_nul", Path("jo\x00e")


# ---- running cases ----------------------------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.outcomes: Counter = Counter()
        self.errors: Counter = Counter()
        self.problems: list[dict] = []
        self.n = 0

    def add(self, case: str, outcome: str, detail: str = "") -> None:
        self.n += 1
        self.outcomes[outcome] += 1
        if outcome == "codectts_error":
            self.errors[detail.split(":")[0]] += 1
        elif outcome not in ("ok", "2xx", "4xx"):
            self.problems.append({"case": case, "outcome": outcome, "detail": detail[:600]})

    def summary(self) -> dict:
        return {"inputs": self.n, "outcomes": dict(self.outcomes), "codectts_errors": dict(self.errors),
                "problems": self.problems}


def run_bounded(fn: Callable[[], str], timeout_s: float) -> tuple[str, str]:
    """(outcome, detail) of fn() in a daemon thread; 'hang' if it does not finish in time."""
    from codectts.errors import CodecTTSError

    box: dict = {}

    def target() -> None:
        try:
            box["result"] = ("ok", fn())
        except CodecTTSError as e:
            box["result"] = ("codectts_error", f"{type(e).__name__}: {e}")
        except BaseException as e:  # noqa: BLE001 - what the benchmark is looking for
            box["result"] = ("other_exception", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout_s)
    return box.get("result", ("hang", f"no result after {timeout_s:g} s"))


def check_audio(wav, sr: int) -> str:
    import numpy as np

    wav = np.asarray(wav)
    if wav.ndim != 1 or wav.size == 0 or not np.isfinite(wav).all() or np.abs(wav).max() > 1.0:
        raise AssertionError(f"bad audio: shape {wav.shape}, finite {bool(np.isfinite(wav).all())}")
    return f"{wav.size / sr:.2f} s"


def api_cases(synth, texts, options, voices_src: Path, work: Path, limits, timeout_s: float,
              stream_every: int, log: Callable[[str], None]) -> Tally:
    import numpy as np

    from codectts.infer import Synthesizer

    tally = Tally()

    def speak(text, stream=False, **kw):
        if stream:
            chunks = list(synth.stream(text, **kw))
            return check_audio(np.concatenate(chunks) if chunks else np.zeros(0), synth.sample_rate)
        wav, sr = synth.synthesize(text, **kw)
        return check_audio(wav, sr)

    for i, (name, text) in enumerate(texts):
        for stream in (False, True) if i % stream_every == 0 else (False,):
            outcome, detail = run_bounded(lambda t=text, s=stream, n=i: speak(t, s, seed=n), timeout_s)
            tally.add(f"text:{name}{':stream' if stream else ''}", outcome, detail)
            log(f"api text {name}{' stream' if stream else ''}: {outcome} {detail[:100]!r}")
    for name, kw in options:
        kw = dict(kw)
        text = kw.pop("text", SHORT)
        for stream in (False, True):
            outcome, detail = run_bounded(lambda k=kw, s=stream, t=text: speak(t, s, **k), timeout_s)
            tally.add(f"option:{name}{':stream' if stream else ''}", outcome, detail)
            log(f"api option {name}{' stream' if stream else ''}: {outcome} {detail[:100]!r}")
    for name, folder in damaged_voices(voices_src, work):
        def load_and_speak(f=folder):
            s = Synthesizer.load(f, limits=limits)
            wav, sr = s.synthesize(SHORT, seed=0)
            return check_audio(wav, sr)

        outcome, detail = run_bounded(load_and_speak, timeout_s)
        tally.add(f"voice:{name}", outcome, detail)
        log(f"api voice {name}: {outcome} {detail[:100]!r}")
    return tally


# ---- the server -------------------------------------------------------------------------------------------------
def serve_child(port: int, max_audio_s: float) -> None:
    """Run in a child process: the shipped voice behind the real app, uvicorn on 127.0.0.1."""
    import torch
    import uvicorn

    torch.set_num_threads(1)
    from codectts.infer import Synthesizer
    from codectts.infer.synthesizer import Limits
    from codectts.serve.app import create_app
    from codectts.serve.cli import UVICORN_LIMITS
    from codectts.serve.service import ServeConfig

    synth = Synthesizer.load(limits=Limits(max_audio_s=max_audio_s))
    app = create_app({synth.name: synth}, ServeConfig(allowed_hosts=("127.0.0.1",)))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", **UVICORN_LIMITS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json_bytes(body) -> bytes:
    """JSON as a hostile client writes it: NaN/Infinity literals, lone surrogates as \\ud800 escapes."""
    return json.dumps(body, allow_nan=True).encode()


def protocol_cases() -> list[tuple[str, dict]]:
    """HTTP requests beyond the JSON body's fields: (name, httpx request kwargs)."""
    ok = {"input": SHORT, "response_format": "wav"}
    j = {"Content-Type": "application/json"}
    cases = [
        ("text_plain", {"content": _json_bytes(ok), "headers": {"Content-Type": "text/plain"}}),
        ("form", {"content": b"input=hi", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("no_content_type", {"content": _json_bytes(ok), "headers": {"Content-Type": ""}}),
        ("json_charset", {"content": _json_bytes(ok), "headers": {"Content-Type": "application/json; charset=utf-8"}}),
        ("bad_host", {"content": _json_bytes(ok), "headers": {**j, "Host": "evil.example"}}),
        ("bad_host_port", {"content": _json_bytes(ok), "headers": {**j, "Host": "attacker.test:80"}}),
        ("empty_body", {"content": b"", "headers": j}), ("null_body", {"content": b"null", "headers": j}),
        ("array_body", {"content": b"[1,2]", "headers": j}), ("string_body", {"content": b'"hi"', "headers": j}),
        ("invalid_utf8", {"content": b'{"input": "\xff\xfe"}', "headers": j}),
        ("truncated", {"content": b'{"input": "hel', "headers": j}),
        ("deep_nesting", {"content": b'{"input": "x", "a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "headers": j}),
        ("huge_body", {"content": b'{"input": "' + b"a" * 200_000 + b'"}', "headers": j}),
        ("huge_number", {"content": b'{"input": "hi", "seed": 1' + b"0" * 5000 + b"}", "headers": j}),
        ("float_overflow", {"content": b'{"input": "hi", "speed": 1e400}', "headers": j}),
        ("nan_literal", {"content": b'{"input": "hi", "temperature": NaN}', "headers": j}),
        ("duplicate_keys", {"content": b'{"input": "hi", "input": 5}', "headers": j}),
        ("bom_json", {"content": b"\xef\xbb\xbf" + _json_bytes(ok), "headers": j}),
        ("utf16_json", {"content": json.dumps(ok).encode("utf-16"), "headers": j}),
    ]
    bodies = [
        ("input_missing", {"voice": "joe"}), ("input_int", {"input": 5}), ("input_list", {"input": ["a"]}),
        ("input_null", {"input": None}), ("input_object", {"input": {"text": "hi"}}),
        ("voice_alloy", {**ok, "voice": "alloy"}), ("voice_path", {**ok, "voice": "../joe"}),
        ("voice_nul", {**ok, "voice": "jo\x00e"}), ("voice_long", {**ok, "voice": "v" * 10_000}),
        ("voice_int", {**ok, "voice": 1}), ("model_unknown", {**ok, "model": "gpt-5"}),
        ("model_tts1", {**ok, "model": "tts-1"}), ("format_exe", {**ok, "response_format": "exe"}),
        ("format_upper", {**ok, "response_format": "WAV"}), ("format_pcm", {**ok, "response_format": "pcm"}),
        ("format_mp3", {**ok, "response_format": "mp3"}), ("format_opus", {**ok, "response_format": "opus"}),
        ("format_flac", {**ok, "response_format": "flac"}), ("format_aac", {**ok, "response_format": "aac"}),
        ("stream_wav", {**ok, "stream": True}), ("stream_sse", {**ok, "stream_format": "sse"}),
        ("stream_bogus", {**ok, "stream_format": "video"}), ("stream_false_sse", {**ok, "stream": False,
                                                                                  "stream_format": "sse"}),
        ("stream_string", {**ok, "stream": "yes"}), ("instructions", {**ok, "instructions": "whisper" * 1000}),
        ("extra_fields", {**ok, "foo": [1, {"bar": None}]}), ("input_4097", {"input": "a" * 4097}),
        ("input_surrogate", {"input": "hi \ud800"}), ("input_nul", {"input": "\x00"}),
    ]
    cases += [(name, {"content": _json_bytes(b), "headers": j}) for name, b in bodies]
    return cases


def server_cases(url: str, texts, options, timeout_s: float, log: Callable[[str], None]) -> Tally:
    import httpx

    tally = Tally()
    j = {"Content-Type": "application/json"}

    def send(name: str, method: str = "POST", path: str = "/v1/audio/speech", **kw) -> None:
        try:
            with httpx.Client(base_url=url, timeout=timeout_s) as client, \
                    client.stream(method, path, **kw) as r:
                body = b"".join(r.iter_bytes())
                status = r.status_code
        except httpx.TimeoutException as e:
            tally.add(name, "hang", f"{type(e).__name__}: {e}")
            log(f"server {name}: hang")
            return
        except httpx.HTTPError as e:
            tally.add(name, "connection_error", f"{type(e).__name__}: {e}")
            log(f"server {name}: connection error {e}")
            return
        if status >= 500:
            tally.add(name, "5xx", f"{status}: {body[:300]!r}")
        elif status >= 400:
            tally.add(name, "4xx", str(status))
        elif not body or b'"type": "error"' in body or b'"type":"error"' in body:
            tally.add(name, "broken_2xx", f"{status}: {body[-300:]!r}")
        else:
            tally.add(name, "2xx", str(status))
        log(f"server {name}: {status} ({len(body)} bytes)")

    for i, (name, text) in enumerate(texts):
        body = {"input": text, "response_format": "wav", "seed": i}
        if i % 5 == 0:
            body["stream"] = True
        send(f"text:{name}", content=_json_bytes(body), headers=j)
    for name, kw in options:
        kw = dict(kw)
        body = {"input": kw.pop("text", SHORT), "response_format": "wav", **kw}
        send(f"option:{name}", content=_json_bytes(body), headers=j)
    for name, kw in protocol_cases():
        send(f"http:{name}", **kw)
    for method, path in [("GET", "/"), ("GET", "/health"), ("GET", "/v1/models"), ("GET", "/v1/voices"),
                         ("GET", "/v1/audio/speech"), ("PUT", "/v1/audio/speech"), ("DELETE", "/"),
                         ("GET", "/../../etc/passwd"), ("GET", "/static/../../pyproject.toml"),
                         ("GET", "/%00"), ("GET", "/" + "a" * 8000), ("OPTIONS", "/v1/audio/speech")]:
        send(f"http:{method} {path[:40]}", method=method, path=path)
    return tally


@contextlib.contextmanager
def running_server(max_audio_s: float, log_file: Path) -> Iterator[str]:
    import httpx

    port = _free_port()
    with open(log_file, "w") as err:
        cmd = [sys.executable, __file__, "--serve-child", str(port), "--max-audio-s", str(max_audio_s)]
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            t0 = time.monotonic()
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}; see {log_file}")
                try:
                    if httpx.get(url + "/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - t0 > STARTUP_TIMEOUT_S:
                    raise RuntimeError(f"server not up after {STARTUP_TIMEOUT_S:g} s")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---- main -------------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["api", "server", "voices"], help="one path only (voices: damaged voices alone)")
    ap.add_argument("--max-audio-s", type=float, default=20.0, help="Limits.max_audio_s for every request")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before a case counts as a hang")
    ap.add_argument("--random", type=int, default=100, help="random Unicode strings (and half as many number soups)")
    ap.add_argument("--quick", action="store_true", help="every tenth case only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the JSON result here")
    ap.add_argument("--verbose", action="store_true", help="print every case")
    ap.add_argument("--serve-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_child:
        serve_child(args.serve_child, args.max_audio_s)
        return

    import logging

    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # "dropped unknown symbols" and friends: thousands of lines otherwise
    from codectts.infer import Synthesizer
    from codectts.infer.synthesizer import Limits
    from codectts.infer.voice import PACKAGE_VOICES

    machine = machine_info()
    texts, options = hostile_texts(args.seed, args.random), hostile_options()
    if args.quick:
        texts, options = texts[::10], options[::10]
    if args.only == "voices":
        texts, options = [], []
    log = print if args.verbose else (lambda _: None)
    limits = Limits(max_audio_s=args.max_audio_s)
    result: dict = {"max_audio_s": args.max_audio_s, "timeout_s": args.timeout, "texts": len(texts),
                    "options": len(options)}
    t0 = time.perf_counter()
    if args.only in (None, "api", "voices"):
        synth = Synthesizer.load(limits=limits)
        with tempfile.TemporaryDirectory(prefix="hostile-voices-") as work:
            tally = api_cases(synth, texts, options, PACKAGE_VOICES / "joe", Path(work), limits, args.timeout,
                              stream_every=5 if not args.quick else 1, log=log)
        result["api"] = {**tally.summary(), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"api: {tally.n} inputs {dict(tally.outcomes)}", file=sys.stderr)
    if args.only in (None, "server"):
        t1 = time.perf_counter()
        log_file = Path(tempfile.gettempdir()) / f"hostile-server-{os.getpid()}.log"
        with running_server(args.max_audio_s, log_file) as url:
            tally = server_cases(url, texts, options, args.timeout, log)
        server_log = log_file.read_text(errors="replace")
        result["server"] = {**tally.summary(), "seconds": round(time.perf_counter() - t1, 1),
                            "log_tracebacks": server_log.count("Traceback")}
        print(f"server: {tally.n} inputs {dict(tally.outcomes)}, {server_log.count('Traceback')} tracebacks "
              f"in its log", file=sys.stderr)
    result["inputs"] = sum(result[k]["inputs"] for k in ("api", "server") if k in result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    report(result, args.out, machine)


if __name__ == "__main__":
    main()

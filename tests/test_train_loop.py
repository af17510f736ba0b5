"""The generic training loop: the time budget, resume (RNGs, best score, corrupt checkpoints, leftovers,
logs) and the non-finite loss guard."""
import json
import os
import subprocess

import pytest
import torch

from codectts.errors import CheckpointError, ConfigError, TrainingError
from codectts.train import loop
from codectts.train.loop import Task, TrainConfig, Trainer, lr_at


class Clock:
    """The loop's clock, advanced by the tasks' steps only: the time-budget tests do not depend on the load."""

    def __init__(self):
        self.now = 1_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(loop, "time", c)
    return c


class SlowRegression(Task):
    """One linear layer on a fixed batch; each step takes `sleep_s` of the loop's clock (100 steps/s)."""

    def __init__(self, sleep_s: float = 0.01):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.x, self.sleep_s = torch.randn(32, 4), sleep_s

    def train_batches(self, epoch):
        for _ in range(1000):
            yield self.x

    def loss(self, x):
        loop.time.sleep(self.sleep_s)
        return ((self.model(x) - x.sum(1, keepdim=True)) ** 2).mean(), {}

    def export(self, path):
        path.mkdir(parents=True, exist_ok=True)


def _cfg(tmp_path, **kw):
    base = dict(out_dir=str(tmp_path / "run"), max_steps=100_000, warmup_steps=20, eval_every=0, save_every=0,
                log_every=10, tensorboard=False, progress=False, lr=1e-2)
    return TrainConfig(**{**base, **kw})


def test_time_budget_shortens_the_schedule_and_the_run_ends_at_its_last_step(tmp_path):
    trainer = Trainer(SlowRegression(), _cfg(tmp_path, max_minutes=0.05))  # 3 s at <=100 steps/s
    trainer.fit()
    assert trainer.schedule_fitted
    assert 250 < trainer.cfg.max_steps < 300  # 95 % of the 3 s budget at 100 steps/s
    # the run ends at the end of its fitted cosine, not mid-way
    assert trainer.step == trainer.cfg.max_steps
    assert lr_at(trainer.cfg.max_steps, trainer.cfg) == trainer.cfg.lr * trainer.cfg.min_lr_ratio


def test_without_a_time_budget_the_schedule_is_untouched(tmp_path):
    trainer = Trainer(SlowRegression(sleep_s=0.0), _cfg(tmp_path, max_steps=60))
    trainer.fit()
    assert not trainer.schedule_fitted and trainer.cfg.max_steps == 60 and trainer.step == 60


def test_a_fitted_schedule_survives_resume(tmp_path):
    first = Trainer(SlowRegression(), _cfg(tmp_path, max_minutes=0.05))
    first.fit()
    fitted = first.cfg.max_steps
    again = Trainer(SlowRegression(), _cfg(tmp_path))  # same run folder, no time budget this time
    assert again.resume()
    assert again.cfg.max_steps == fitted and again.schedule_fitted


class SpeedsUp(SlowRegression):
    """Slow while warming up (as when other jobs share the device at start), fast afterwards."""

    def loss(self, x):
        self.sleep_s = 0.03 if self.calls < 20 else 0.003
        self.calls += 1
        return super().loss(x)

    calls = 0


def test_the_schedule_is_refitted_when_the_step_rate_changes(tmp_path):
    trainer = Trainer(SpeedsUp(), _cfg(tmp_path, max_minutes=0.05))
    trainer.fit()
    # fitted at warmup end to the slow rate (< 100 steps), refitted at 40 % of the budget to the fast one
    assert trainer.cfg.max_steps > 300 and trainer.step == trainer.cfg.max_steps


# ---- resume restores everything ----------------------------------------------------------------------------


class Crash(Exception):
    pass


class NoisyRegression(Task):
    """Each step draws from torch, numpy and Python RNGs (and dropout), so a resume that misses any of
    them ends on different weights. Batches are (epoch, index) pairs: the data position shows too."""

    def __init__(self, crash_at: int | None = None, scores: dict[int, float] | None = None):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
        self.crash_at, self.scores, self.calls, self.trainer = crash_at, scores or {}, 0, None

    def train_batches(self, epoch):
        return self.shard([(epoch, i) for i in range(7)])

    def loss(self, batch):
        import random

        import numpy as np

        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise Crash()
        epoch, i = batch
        g = torch.Generator().manual_seed(100 * epoch + i)
        x = torch.randn(16, 4, generator=g) + torch.rand(16, 4) * 0.1
        y = x.sum(1, keepdim=True) + float(np.random.rand()) + random.random()
        return ((self.model(x) - y) ** 2).mean(), {}

    def evaluate(self):
        step = self.trainer.step
        return {"score": self.scores[step]} if step in self.scores else {}

    def export(self, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "step").write_text(str(self.trainer.step))


def _run(tmp_path, task, resume=False, **kw):
    trainer = Trainer(task, _cfg(tmp_path, **{"max_steps": 12, "warmup_steps": 2, "save_every": 4, "log_every": 1,
                                               "eval_every": 2, **kw}))
    task.trainer = trainer
    if resume:
        trainer.resume()
    return trainer


def _weights(task):
    return torch.cat([p.detach().flatten() for p in task.model.parameters()])


def test_resume_after_a_crash_ends_exactly_where_an_uninterrupted_run_does(tmp_path):
    whole = NoisyRegression()
    _run(tmp_path / "a", whole).fit()
    crashed = _run(tmp_path / "b", NoisyRegression(crash_at=11))
    with pytest.raises(Crash):
        crashed.fit()  # after the checkpoint at step 8, and log lines for steps 9 and 10
    again = NoisyRegression()
    trainer = _run(tmp_path / "b", again, resume=True)
    assert trainer.step == 8
    trainer.fit()
    torch.testing.assert_close(_weights(again), _weights(whole), rtol=0, atol=0)
    log = [json.loads(line) for line in (tmp_path / "b" / "run" / "log.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in log if r["kind"] == "train"]
    assert train_steps == list(range(1, 13))  # no duplicate lines for the steps replayed after the crash
    ref = [json.loads(line) for line in (tmp_path / "a" / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in log if r["kind"] == "train"] == [r["loss"] for r in ref if r["kind"] == "train"]


def test_a_worse_model_never_overwrites_best_after_resume(tmp_path):
    # best at step 6 (after the checkpoint at 4); the crash at step 7 loses it from the checkpoints
    scores = {2: 1.0, 4: 0.5, 6: 0.3, 8: 0.4, 10: 0.35, 12: 0.6}
    first = _run(tmp_path, NoisyRegression(crash_at=7, scores=scores), keep_last=1)
    with pytest.raises(Crash):
        first.fit()
    assert (tmp_path / "run" / "best" / "step").read_text() == "6"
    trainer = _run(tmp_path, NoisyRegression(scores=scores), resume=True, keep_last=1)
    assert trainer.step == 4 and trainer.best == 0.3
    trainer.fit()
    assert (tmp_path / "run" / "best" / "step").read_text() == "6"
    assert json.loads((tmp_path / "run" / "best.json").read_text()) == {"step": 6, "score": 0.3}


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
    _run(tmp_path, NoisyRegression(), max_steps=8).fit()
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_0000004", "step_0000008"]
    state = ckpts / "step_0000008" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])  # cut short, as by a full disk
    trainer = _run(tmp_path, NoisyRegression(), resume=True, max_steps=8)
    assert trainer.step == 4 and "falling back to step_0000004" in caplog.text
    assert (ckpts / "step_0000008.corrupt").exists()
    with pytest.raises(CheckpointError, match="unreadable"):
        _run(tmp_path, NoisyRegression(), max_steps=8).resume(ckpts / "step_0000008.corrupt")


def test_leftovers_of_a_killed_writer_are_cleaned(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "run"
    _run(tmp_path, NoisyRegression(), max_steps=4).fit()
    (run / "last").rename(run / f".last.old-{dead.pid}")  # killed between replace_dir's two renames
    (run / f".best.old-{dead.pid}").mkdir()  # killed before removing the old copy
    (run / f".best.tmp-{dead.pid}-x1").mkdir()
    (run / "checkpoints" / f".tmp-{dead.pid}-x2").mkdir()
    (run / "checkpoints" / f".tmp-{os.getppid()}-x3").mkdir()  # a live process's: left alone
    _run(tmp_path, NoisyRegression(), max_steps=4)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert (run / "last" / "step").read_text() == "4"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [f".tmp-{os.getppid()}-x3", "step_0000004"]


def test_keep_last_and_fresh_runs_in_a_used_folder(tmp_path):
    with pytest.raises(ConfigError, match="keep_last"):
        _cfg(tmp_path, keep_last=0)
    _run(tmp_path, NoisyRegression(), max_steps=12, keep_last=1).fit()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_0000012"]
    with pytest.raises(ConfigError, match="--resume"):
        _run(tmp_path, NoisyRegression()).fit()


# ---- non-finite loss or gradients -------------------------------------------------------------------------


class Poisoned(NoisyRegression):
    def __init__(self, bad=lambda call: False, grads=False):
        super().__init__()
        self.bad, self.grads = bad, grads

    def loss(self, batch):
        loss, m = super().loss(batch)
        if self.bad(self.calls):
            if not self.grads:
                return loss * float("nan"), m
            def poison(g):  # finite loss, NaN gradients, this backward only
                handle.remove()
                return g * float("nan")

            handle = self.model[0].weight.register_hook(poison)
        return loss, m


def test_a_loss_that_stays_nan_is_a_training_error(tmp_path):
    trainer = _run(tmp_path, Poisoned(bad=lambda call: call > 3), max_bad_steps=5)
    with pytest.raises(TrainingError, match="5 steps in a row at step 3"):
        trainer.fit()


@pytest.mark.parametrize("grads", [False, True])
def test_occasional_nan_steps_are_skipped_and_counted(tmp_path, grads):
    task = Poisoned(bad=lambda call: call % 4 == 0, grads=grads)
    trainer = _run(tmp_path, task, max_steps=9)
    trainer.fit()
    assert trainer.step == 9 and trainer.skipped_steps == 2  # calls 4 and 8 (call 12 ends the run)
    assert torch.isfinite(_weights(task)).all()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-2]["kind"] == "train" and log[-2]["skipped_steps"] == 2

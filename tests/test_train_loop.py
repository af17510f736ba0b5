"""The generic training loop: a time budget shortens the LR schedule so the cosine ends in time."""
import time

import torch

from codectts.train.loop import Task, TrainConfig, Trainer, lr_at


class SlowRegression(Task):
    """One linear layer on a fixed batch; each step sleeps so the step rate is known (~100 steps/s)."""

    def __init__(self, sleep_s: float = 0.01):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.x, self.sleep_s = torch.randn(32, 4), sleep_s

    def train_batches(self, epoch):
        for _ in range(1000):
            yield self.x

    def loss(self, x):
        time.sleep(self.sleep_s)
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
    assert 20 < trainer.cfg.max_steps < 400
    # the run ends at (or, on a loaded machine, just before) the end of its fitted cosine, not mid-way
    assert trainer.step >= 0.9 * trainer.cfg.max_steps
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
    assert trainer.cfg.max_steps > 150 and trainer.step >= 0.9 * trainer.cfg.max_steps

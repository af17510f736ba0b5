"""One rank of tests/test_train_ddp.py: a tiny regression trained by the shared loop in several processes.

Run with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set (as torchrun or accelerate launch
set them); writes OUT/rank<R>.json with the batches this rank trained on and its final weights."""
import json
import sys
from pathlib import Path

import torch

from codectts.train.loop import Task, TrainConfig, Trainer

N_ITEMS = 10  # batches an epoch


class Indexed(Task):
    def __init__(self):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.seen: list[list[int]] = []

    def train_batches(self, epoch):
        return self.shard([(epoch, i) for i in range(N_ITEMS)])

    def loss(self, batch):
        epoch, i = batch
        self.seen.append([epoch, i])
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(i))
        return ((self.model(x) - x.sum(1, keepdim=True)) ** 2).mean(), {"rank": float(self.rank)}

    def evaluate(self):
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(99))
        return {"score": float(((self.model(x) - x.sum(1, keepdim=True)) ** 2).mean())}

    def export(self, path):
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), path / "model.pt")


def main(out: str, max_steps: int) -> None:
    task = Indexed()
    trainer = Trainer(task, TrainConfig(out_dir=out, max_steps=max_steps, warmup_steps=1, lr=1e-2, log_every=1,
                                        eval_every=4, save_every=4, tensorboard=False, progress=False))
    trainer.fit()
    weights = [float(v) for p in trainer.accelerator.unwrap_model(task.model).parameters() for v in p.flatten()]
    Path(out, f"rank{trainer.rank}.json").write_text(json.dumps({"world": trainer.world, "seen": task.seen,
                                                                 "weights": weights}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

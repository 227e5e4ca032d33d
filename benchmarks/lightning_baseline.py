"""The recipe run written in PyTorch Lightning, the way its documentation recommends for data that fits in
memory: a LightningModule, TensorDatasets through DataLoaders, the TensorBoard logger, no progress bar and
no model summary. The baseline of benchmarks/bench_lightning.py.

    python benchmarks/lightning_baseline.py [--lr 0.01] [--seed 2] [--output DIR]

Same job as `python -m src.train dataset=fashion_mnist_binary`: Fashion-MNIST 0 vs 6, logistic regression,
SGD lr 0.01, batch 64, 10 epochs, mean BCE, 10% of the training files for validation (a permutation seeded
by `seed`), test at the end; `seed` seeds the split, the initial weights and the shuffling, as there.

Settings chosen because they make Lightning faster here and a user would plausibly pick them (each one
measured, see BENCHMARKS.md): the CPU with one torch thread (what the project's `trainer.threads=auto` does
for models this small), num_workers=0 (workers only copy tensors that are already in memory), the training
loss logged once per epoch as the project logs it, no sanity-check pass, validation and test in one batch,
`trainer.test(verbose=False)`, and one checkpoint at the end (the project writes one at the end of a
10-epoch run too).
"""

import argparse
import gzip
import json
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset, random_split

ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
CLASSES, MEAN, STD = (0, 6), 0.2860, 0.3530
BATCH_SIZE, EPOCHS, VAL_FRACTION = 64, 10, 0.1

# Lightning suggests more DataLoader workers; for tensors already in memory they only cost process starts.
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): magic, one big-endian uint32 per dimension, then uint8 values."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def two_classes(root: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (N, 784), normalized, and targets (N,) in {0., 1.}: the second class is the positive one."""
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    keep = np.isin(labels, CLASSES)
    pixels = torch.from_numpy(images[keep].reshape(int(keep.sum()), -1).astype(np.float32))
    return (pixels / 255.0 - MEAN) / STD, torch.from_numpy(labels[keep] == CLASSES[1]).float()


def datasets(root: Path, seed: int) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Train, validation (a seeded 10% of the training files) and test."""
    inputs, targets = two_classes(root, "train")
    num_val = round(len(inputs) * VAL_FRACTION)
    val_part, train_part = random_split(
        range(len(inputs)), [num_val, len(inputs) - num_val], generator=torch.Generator().manual_seed(seed)
    )
    train_index, val_index = torch.tensor(train_part.indices), torch.tensor(val_part.indices)
    return (
        TensorDataset(inputs[train_index], targets[train_index]),
        TensorDataset(inputs[val_index], targets[val_index]),
        TensorDataset(*two_classes(root, "t10k")),
    )


class LogisticRegression(L.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(28 * 28, 1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs).squeeze(1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        loss = torch.nn.functional.binary_cross_entropy_with_logits(self(inputs), targets)
        self.log("train/loss", loss, on_step=False, on_epoch=True)  # per epoch, as the project logs
        return loss

    def evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        inputs, targets = batch
        logits = self(inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        accuracy = ((logits > 0).float() == targets).float().mean()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/accuracy": accuracy})

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def fit_and_test(lr: float, seed: int, output: Path, root: Path = ROOT, epochs: int = EPOCHS) -> dict:
    """Train and test one model; returns the test metrics, the last validation loss and fit's seconds."""
    torch.set_num_threads(1)
    train, val, test = datasets(root, seed)
    L.seed_everything(seed, verbose=False)  # just before the model, as the project seeds its weights
    model = LogisticRegression(lr)
    shuffle = torch.Generator().manual_seed(seed)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=TensorBoardLogger(output, name="lightning", default_hp_metric=False),
        callbacks=[ModelCheckpoint(every_n_epochs=epochs)],  # one checkpoint, at the end
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    trainer.fit(
        model,
        DataLoader(train, batch_size=BATCH_SIZE, shuffle=True, generator=shuffle, num_workers=0),
        DataLoader(val, batch_size=len(val)),
    )
    fit_seconds = time.perf_counter() - started
    val_loss = float(trainer.callback_metrics["val/loss"])
    (metrics,) = trainer.test(model, DataLoader(test, batch_size=len(test)), verbose=False)
    return {**metrics, "val/loss": val_loss, "fit_seconds": fit_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=2)  # the project's default seed
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument(
        "--output", type=Path, default=None, help="logs and checkpoints (default: a temp dir)"
    )
    args = parser.parse_args()
    output = args.output or Path(tempfile.mkdtemp(prefix="lightning-"))
    print(json.dumps(fit_and_test(args.lr, args.seed, output, args.root)))


if __name__ == "__main__":
    main()

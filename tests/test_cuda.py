"""device=cuda end to end, where a GPU is present (skipped elsewhere): the same numbers as the CPU's
within float tolerance, stacked members equal to their solo runs, resume and evaluate."""

import pytest
import torch

from src.evaluate import evaluate_checkpoint
from tests.helpers import read_metrics, read_scalars, train_here, tutorial_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def test_the_tutorial_on_the_gpu(tmp_path):
    train_here(tmp_path, "device=cuda")
    losses, _, _ = tutorial_run(seed=2)
    assert [value for _, value in read_scalars(tmp_path)["train/loss"]] == pytest.approx(losses, abs=1e-5)
    assert read_metrics(tmp_path)["predictions"]["4.0"] == pytest.approx(0.88, abs=0.01)


def test_a_pair_on_the_gpu_equals_the_cpu_and_resumes_and_evaluates(tmp_path, fake_pair):
    gpu, cpu = tmp_path / "gpu", tmp_path / "cpu"
    train_here(gpu, *fake_pair, "device=cuda", "optimizer.lr=0.003")
    train_here(cpu, *fake_pair, "optimizer.lr=0.003")
    for tag, points in read_scalars(cpu).items():
        assert [v for _, v in read_scalars(gpu)[tag]] == pytest.approx(
            [v for _, v in points], rel=1e-4, abs=1e-6
        )
    train_here(gpu, *fake_pair[:2], "device=cuda", "optimizer.lr=0.003", "trainer.epochs=5", "resume=true")
    assert read_metrics(gpu)["epochs"] == 5
    evaluated = evaluate_checkpoint(gpu / "checkpoints" / "last.pt")
    assert evaluated["test/accuracy"] == pytest.approx(read_metrics(gpu)["test/accuracy"])


def test_a_stack_on_the_gpu(tmp_path, fake_pair):
    from tests.test_stack import assert_same_numbers, stacked

    common = [*fake_pair, "device=cuda", "loss=ce", "trainer.batch_size=16"]
    outcomes = stacked(tmp_path, common, [["optimizer.lr=0.01", "seed=1"], ["optimizer.lr=0.02", "seed=3"]])
    assert all(outcome["status"] == "completed" for outcome in outcomes)
    train_here(tmp_path / "solo", *common, "optimizer.lr=0.02", "seed=3")
    assert_same_numbers(tmp_path / "stack" / "1", tmp_path / "solo")

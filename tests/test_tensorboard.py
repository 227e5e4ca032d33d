"""What TensorBoard shows of a folder of runs, read by TensorBoard's own loaders and HParams classes."""

import pytest
from tensorboard.plugins.hparams import api_pb2

from src.errors import TrainingDiverged
from src.outputs import RunRecorder
from src.scores import BINARY
from tests import tensorboard_readers as tb
from tests.helpers import event_dir, launch, train_here, write_fake_dataset

SCALARS = {"train/loss", "val/loss", "val/accuracy", "test/loss", "test/accuracy"}
PER_CLASS = "test/accuracy_per_class/"  # one scalar per class, beside the contract's five
SCORES = {f"{split}/{name}" for split in ("val", "test") for name in BINARY}  # a pair's (src/scores.py)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Runs of both kinds side by side, as under experiments/: toy runs at two learning rates, one that
    diverged, one that was interrupted, and an MNIST-style run."""
    logdir = tmp_path_factory.mktemp("experiments")
    train_here(logdir / "toy", "trainer.epochs=20")
    train_here(logdir / "toy_fast", "optimizer.lr=0.1", "trainer.epochs=20")
    with pytest.raises(TrainingDiverged):
        train_here(logdir / "diverged", "optimizer.lr=1e38")
    with RunRecorder(logdir / "stopped", "defaults", "", {"optimizer.lr": 0.01}) as recorder:
        recorder.record_epoch(0, {"train/loss": 2.0})
        recorder.finish("interrupted")  # what a run does on Ctrl-C before it exits
    root = write_fake_dataset(logdir.parent / "data")
    train_here(logdir / "mnist", "dataset=mnist_binary", f"dataset.root={root}", "dataset.download=false",
               "trainer.epochs=2")  # fmt: skip
    return logdir


def session_names(logdir):
    return {str(event_dir(logdir / run).relative_to(logdir)): run
            for run in ("toy", "toy_fast", "diverged", "stopped", "mnist")}  # fmt: skip


def check_hparams(logdir, experiment, groups):
    infos = {info.name: info for info in experiment.hparam_infos}
    differing = [info.name for info in experiment.hparam_infos if info.differs]
    assert experiment.hparam_infos[: len(differing)] == [infos[name] for name in differing]  # shown first
    assert {"dataset", "optimizer.lr", "loss.reduction", "trainer.epochs"} <= set(differing)
    assert not infos["device"].differs and not infos["seed"].differs
    assert infos["dataset.download"].type == api_pb2.DATA_TYPE_BOOL  # a boolean, not 0.0
    assert infos["trainer.batch_size"].type == api_pb2.DATA_TYPE_FLOAT64  # no "None" among numbers
    tags = {info.name.tag for info in experiment.metric_infos}
    assert {tag for tag in tags if not tag.startswith(PER_CLASS)} == SCALARS | SCORES  # every kind's metrics

    names = session_names(logdir)
    sessions = {names[group.name]: group.sessions[0] for group in groups}
    assert set(sessions) == set(names.values())  # every run of every kind is a row
    assert {run: s.status for run, s in sessions.items()} == {
        "toy": api_pb2.STATUS_SUCCESS, "toy_fast": api_pb2.STATUS_SUCCESS, "mnist": api_pb2.STATUS_SUCCESS,
        "diverged": api_pb2.STATUS_FAILURE, "stopped": api_pb2.STATUS_UNKNOWN,
    }  # fmt: skip
    assert all(s.start_time_secs > 1e9 for s in sessions.values())
    assert all(s.end_time_secs >= s.start_time_secs for run, s in sessions.items() if run != "stopped")
    mnist = {value.name.tag: value.value for value in sessions["mnist"].metric_values}
    assert {tag for tag in mnist if not tag.startswith(PER_CLASS)} == SCALARS | SCORES
    assert {value.name.tag for value in sessions["toy"].metric_values} == {"train/loss"}


def test_hparams_lists_every_run_with_what_differs_first_and_its_status(logdir):
    check_hparams(logdir, *tb.hparams(tb.python_loader(logdir), logdir))


def test_hparams_reads_the_same_from_the_fast_loader(logdir):
    def ready(provider):
        _, groups = tb.hparams(provider, logdir)
        return len(groups) == 5 and sum(g.sessions[0].status != api_pb2.STATUS_UNKNOWN for g in groups) == 4

    with tb.fast_loader(logdir, ready) as provider:
        check_hparams(logdir, *tb.hparams(provider, logdir))


def test_time_series_groups_pictures_after_the_curves(logdir):
    provider = tb.python_loader(logdir)
    run = str(event_dir(logdir / "mnist").relative_to(logdir))
    images = provider.list_blob_sequences(tb.CONTEXT, experiment_id="", plugin_name="images")[run]
    scalars = provider.list_scalars(tb.CONTEXT, experiment_id="", plugin_name="scalars")[run]
    assert {tag for tag in scalars if not tag.startswith(PER_CLASS)} == SCALARS | SCORES
    assert set(images) == {
        "visuals/loss_curve",
        "visuals/weight_map",
        "visuals/misclassified",
        "visuals/confusion_matrix",
        "visuals/reliability",  # a pair: two classes
    }
    # Time Series sorts its cards by tag, groups them by the tag's first part and opens the first two
    # groups: test (two one-point cards) and train; val follows, the pictures come last.
    assert sorted({tag.split("/")[0] for tag in [*scalars, *images]}) == ["test", "train", "val", "visuals"]


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_sigkill_after_a_flush_past_the_checkpoint_then_resume_shows_one_curve_everywhere(tmp_path):
    import signal
    import time

    import torch

    from src import events

    run_dir = tmp_path / "run"
    # The real command, flushing events every epoch (as a timed flush does every 5 s), so that the
    # event file runs ahead of the last checkpoint when the process is killed.
    args = ["trainer.epochs=1000000", "trainer.checkpoint_every=1000", "trainer.progress=false"]
    process = launch(*args, f"hydra.run.dir={run_dir}", constants={"src.events.FLUSH_SECONDS": 0.0})
    checkpoint = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        folders = {path.parent for path in run_dir.rglob("events.out.tfevents.*")}
        if checkpoint.exists() and folders:
            logged = events.read_scalars(folders.pop()).get("train/loss", [])
            if logged and logged[-1][0] >= 1100:  # 100 epochs past the first checkpoint
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(checkpoint, weights_only=True)["epoch"]
    stale = max(step for step, _ in events.read_scalars(event_dir(run_dir))["train/loss"])
    assert stale >= saved  # epochs logged after the checkpoint: what used to show twice

    train_here(run_dir, *args, f"trainer.epochs={saved + 30}", "resume=true")
    run = str(event_dir(run_dir).relative_to(tmp_path))
    expected = list(range(saved + 30))
    steps = [step for step, _ in events.read_scalars(event_dir(run_dir))["train/loss"]]
    assert steps == expected  # EventAccumulator
    assert [step for step, _ in tb.scalars(tb.python_loader(tmp_path), run, "train/loss")] == expected

    with tb.fast_loader(tmp_path, lambda p: len(tb.scalars(p, run, "train/loss")) >= saved + 30) as fast:
        assert [step for step, _ in tb.scalars(fast, run, "train/loss")] == expected


def test_the_tensorboard_line_gives_an_address_that_opens_on_the_loss_curves(tmp_path):
    import json
    from urllib.parse import parse_qs, urlsplit

    from src.console import tensorboard_command

    command, opening = tensorboard_command(tmp_path, ["train/loss", "val/loss"]).splitlines()
    assert command == f"TensorBoard: tensorboard --logdir {tmp_path}"
    address = urlsplit(opening.removeprefix("  then open "))
    assert (address.netloc, address.fragment) == ("localhost:6006", "timeseries")
    (pinned,) = parse_qs(address.query)["pinnedCards"]  # TensorBoard's own link format for pinned cards
    assert json.loads(pinned) == [
        {"plugin": "scalars", "tag": "train/loss"},
        {"plugin": "scalars", "tag": "val/loss"},
    ]

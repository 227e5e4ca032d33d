"""Nothing a mistake can destroy: refusals before any write, one process per run, full disks."""

import errno
import hashlib
import pathlib

import pytest

from src.errors import ConfigError, DataError, OutputError, TrainingDiverged
from src.rundir import exclusive
from tests.helpers import command, read_metrics, read_scalars, run_here, train_here


def fingerprint(folder):
    """Every file under `folder` with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_rerunning_into_a_finished_run_is_refused_and_leaves_it_untouched(tmp_path):
    train_here(tmp_path, "trainer.epochs=5")
    before = fingerprint(tmp_path)
    with pytest.raises(ConfigError, match="already holds a run completed after 5 epochs; add resume=true"):
        train_here(tmp_path, "trainer.epochs=5")
    assert fingerprint(tmp_path) == before
    train_here(tmp_path, "trainer.epochs=8", "resume=true")  # what the message says works
    assert [step for step, _ in read_scalars(tmp_path)["train/loss"]] == list(range(8))


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_rejected_commands_do_not_touch_an_earlier_run(tmp_path):
    run_dir = tmp_path / "run"
    assert command("trainer.epochs=5", f"hydra.run.dir={run_dir}").returncode == 0
    before = fingerprint(run_dir)
    for overrides in (["trainer.epochs=0"], ["seed=7", "resume=true"], ["trainer.epochs=5"]):
        process = command(*overrides, f"hydra.run.dir={run_dir}")
        assert process.returncode == 2 and len(process.stderr.strip().splitlines()) == 1, process.stderr
        assert process.stdout == ""  # no config tree before a refusal
    assert fingerprint(run_dir) == before
    evaluated = command(f"ckpt_path={run_dir}/checkpoints/last.pt", "x=4", module="src.evaluate")
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_second_process_in_the_same_run_directory_is_refused(tmp_path):
    with exclusive(tmp_path), pytest.raises(ConfigError, match="another process is running in"):
        train_here(tmp_path, "trainer.epochs=2")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "code,words",
    [(errno.ENOSPC, "No space left on device; free some disk space"), (errno.EROFS, "make the folder")],
)
def test_a_full_disk_or_read_only_folder_is_one_line_and_the_last_checkpoint_resumes(
    tmp_path, monkeypatch, caplog, code, words
):
    train_here(tmp_path, "trainer.epochs=4", "trainer.checkpoint_every=2")
    real_open = pathlib.Path.open

    def failing_open(self, mode="r", *args, **kwargs):
        if "w" in mode and self.name.endswith(".tmp"):
            raise OSError(code, __import__("os").strerror(code))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", failing_open)
    assert run_here(tmp_path, "trainer.epochs=8", "trainer.checkpoint_every=2", "resume=true") == 2
    assert f"cannot write {tmp_path}/" in caplog.text and words in caplog.text
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    train_here(tmp_path, "trainer.epochs=8", "resume=true")
    assert read_metrics(tmp_path)["epochs"] == 8


def test_a_loss_that_explodes_is_a_diverged_run(tmp_path):
    # Labels no line separates: a huge step leaves a huge, finite loss rather than a perfect fit.
    with pytest.raises(
        TrainingDiverged, match="train/loss grew from 2 to 7.087e\\+10 by epoch 2; lower optimizer.lr"
    ):
        train_here(tmp_path, "dataset.labels=[1,0,1]", "optimizer.lr=1e10", "trainer.epochs=3")
    assert read_metrics(tmp_path)["status"] == "failed"


def test_an_empty_training_split_says_so(tmp_path, fake_pair):
    with pytest.raises(DataError, match="dataset.val_fraction=0.9999 leaves no training examples"):
        train_here(tmp_path, *fake_pair, "dataset.val_fraction=0.9999")


def test_a_model_too_big_for_memory_is_refused_before_it_is_built(tmp_path):
    with pytest.raises(ConfigError, match="parameters and needs about .* GiB to train"):
        train_here(tmp_path, "model=mlp", "model.hidden_size=4000000000")


def test_unknown_keys_are_refused_even_when_added(tmp_path):
    with pytest.raises(ConfigError, match="trainer.epoch is not a setting; did you mean trainer.epochs"):
        train_here(tmp_path, "+trainer.epoch=5")


def test_a_write_that_fails_is_an_output_error_naming_the_file(tmp_path, monkeypatch):
    from src.files import write_json_atomically

    target = tmp_path / "metrics.json"

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "open", no_space)
    with pytest.raises(OutputError, match=f"cannot write {target}: No space left on device"):
        write_json_atomically(target, {"status": "completed"})


def test_a_job_can_wait_for_the_process_that_holds_its_folder_to_let_go(tmp_path):
    import threading
    import time

    from src.errors import ConfigError
    from src.rundir import exclusive

    held, released = threading.Event(), threading.Event()

    def stopping_worker():  # holds the folder for a moment, as a worker of a killed sweep that is stopping
        with exclusive(tmp_path):
            held.set()
            time.sleep(1.0)
        released.set()

    worker = threading.Thread(target=stopping_worker)
    worker.start()
    held.wait(10)
    with pytest.raises(ConfigError, match="another process is running in"), exclusive(tmp_path):
        pass
    with exclusive(tmp_path, wait_s=20):
        assert released.is_set()
    worker.join()

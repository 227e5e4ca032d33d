"""logger=mlflow: what each run and sweep leaves in MLflow, read back with MlflowClient."""

import json
import signal
import time
from pathlib import Path

import pytest

from src.mlflow_sink import MLflowSink, require_mlflow
from src.mlflow_writer import RUN_FILE, SWEEP_FILE, mlflow_key
from src.outputs import RunRecorder, hyperparameters
from src.sweep import BY_CONFIG_CSV, CURVES_PNG, SUMMARY_CSV, SUMMARY_FILES
from tests.helpers import (
    alive,
    children_of,
    command,
    compose_with_choices,
    launch,
    train_here,
    write_fake_dataset,
)

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module: a new database's migrations take seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


def client_of(store):
    return mlflow.MlflowClient(tracking_uri=store)


def held_id(folder, name=RUN_FILE):
    return json.loads((folder / name).read_text())["run_id"]


def curve(store, run_id, key):
    return [(m.step, m.value) for m in client_of(store).get_metric_history(run_id, key)]


def artifacts(store, run_id, path=None):
    return {info.path for info in client_of(store).list_artifacts(run_id, path)}


def test_one_logger_both_or_either_compose_into_one_typed_node():
    for choice, expected in (("tensorboard", (True, False)), ("mlflow", (False, True)),
                             ("[tensorboard,mlflow]", (True, True))):  # fmt: skip
        cfg, choices = compose_with_choices(f"logger={choice}")
        assert (cfg.logger.tensorboard, cfg.logger.mlflow) == expected
    cfg, _ = compose_with_choices()
    assert cfg.logger.tensorboard and not cfg.logger.mlflow  # the default is unchanged


def test_a_run_is_an_mlflow_run_with_params_curves_artifacts_and_status(tmp_path, store):
    run_dir = tmp_path / "run"
    overrides = ["logger=[tensorboard,mlflow]", f"logger.tracking_uri={store}", "trainer.epochs=12",
                 "optimizer.lr=0.05"]  # fmt: skip
    metrics = train_here(run_dir, *overrides)
    run = client_of(store).get_run(held_id(run_dir))
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "completed"
    assert run.data.tags["run_dir"] == str(run_dir)
    cfg, choices = compose_with_choices(*overrides)
    assert run.data.params == {
        key: str(value) for key, value in hyperparameters(cfg, choices, overrides).items()
    }
    losses = curve(store, run.info.run_id, "train/loss")
    assert [step for step, _ in losses] == list(range(12))
    assert losses[-1][1] == pytest.approx(metrics["train/loss"])
    assert artifacts(store, run.info.run_id) >= {"metrics.json", "config.yaml", "pictures", "checkpoints"}
    assert "pictures/loss_curve.png" in artifacts(store, run.info.run_id, "pictures")
    assert "checkpoints/last.pt" in artifacts(store, run.info.run_id, "checkpoints")
    back = str(tmp_path / "back")
    saved = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="metrics.json", dst_path=back, tracking_uri=store
    )
    assert json.loads(Path(saved).read_text()) == json.loads((run_dir / "metrics.json").read_text())
    assert any(run_dir.glob("*/events.out.tfevents.*"))  # and TensorBoard's events beside it


def test_logger_mlflow_alone_writes_no_tensorboard_events(tmp_path, store):
    run_dir = tmp_path / "run"
    train_here(run_dir, "logger=mlflow", f"logger.tracking_uri={store}", "trainer.epochs=3")
    assert not list(run_dir.rglob("events.out.tfevents.*"))
    assert client_of(store).get_run(held_id(run_dir)).info.status == "FINISHED"


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, store):
    run_dir = tmp_path / "run"
    overrides = ["logger=mlflow", f"logger.tracking_uri={store}", "trainer.checkpoint_every=5"]
    train_here(run_dir, *overrides, "trainer.epochs=5")
    first = held_id(run_dir)
    train_here(run_dir, *overrides, "trainer.epochs=9", "resume=true")
    assert held_id(run_dir) == first
    assert [step for step, _ in curve(store, first, "train/loss")] == list(range(9))
    assert client_of(store).get_run(first).info.status == "FINISHED"


def test_statuses_map_onto_mlflows_and_keys_onto_what_it_accepts(tmp_path, store):
    cfg, _ = compose_with_choices("logger=mlflow", f"logger.tracking_uri={store}")
    for status, expected in (("interrupted", "KILLED"), ("pruned", "KILLED"), ("failed", "FAILED")):
        folder = tmp_path / status
        sink = MLflowSink(cfg.logger, folder, status, "", {"seed": 1}, 0)
        with RunRecorder(folder, status, "", {"seed": 1}, sinks=[sink]) as recorder:
            recorder.record_epoch(0, {"train/loss": 0.5, "test/accuracy_per_class/T-shirt (top)?": 1.0})
            recorder.finish(status, reason=f"{status} by hand")
        run = client_of(store).get_run(held_id(folder))
        assert (run.info.status, run.data.tags["status"], run.data.tags["reason"]) == (
            expected, status, f"{status} by hand")  # fmt: skip
        assert run.data.metrics == {
            "train/loss": 0.5,
            mlflow_key("test/accuracy_per_class/T-shirt (top)?"): 1.0,
        }
    folder = tmp_path / "crashed"  # an exception before finish: failed, as metrics.json says
    sinks = [MLflowSink(cfg.logger, folder, "x", "", {}, 0)]
    with pytest.raises(RuntimeError), RunRecorder(folder, "x", "", {}, sinks=sinks):
        raise RuntimeError("boom")
    assert client_of(store).get_run(held_id(folder)).info.status == "FAILED"


def test_without_mlflow_installed_logger_mlflow_is_one_line(monkeypatch):
    import importlib.util

    from src.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"logger=mlflow needs MLflow: pip install -e '\.\[mlflow\]'"):
        require_mlflow()


@pytest.mark.slow
def test_a_sweep_is_a_parent_run_with_its_jobs_nested(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    sweep_dir = tmp_path / "sweep"
    done = command("-m", "logger=[tensorboard,mlflow]", f"logger.tracking_uri={store}", "trainer.epochs=5",
                   "optimizer.lr=0.01,0.1", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                   f"hydra.sweep.dir={sweep_dir}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    parent = client_of(store).get_run(held_id(sweep_dir, SWEEP_FILE))
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep"] == str(sweep_dir)
    # every file the sweep wrote (two seeds per configuration: the table by configuration too)
    written = {name for name in SUMMARY_FILES if (sweep_dir / name).is_file()}
    assert {SUMMARY_CSV, BY_CONFIG_CSV, CURVES_PNG} <= written
    assert written == artifacts(store, parent.info.run_id) & set(SUMMARY_FILES)
    jobs = client_of(store).search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(run.data.tags["job"] for run in jobs) == ["0", "1", "2", "3"]
    assert sorted(run.data.params["optimizer.lr"] for run in jobs) == ["0.01", "0.01", "0.1", "0.1"]
    assert all(run.info.status == "FINISHED" and run.data.tags["sweep"] == str(sweep_dir) for run in jobs)


def checkpointed_run(tmp_path):
    """A 150-epoch logger=mlflow run, started and running once it wrote its first checkpoint:
    (store, its overrides, its folder, its process)."""
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    root = write_fake_dataset(tmp_path / "data")
    args = ["logger=mlflow", f"logger.tracking_uri={store}", "dataset=mnist_binary", f"dataset.root={root}",
            "trainer.batch_size=8", "trainer.epochs=150", "trainer.checkpoint_every=10"]  # fmt: skip
    run_dir = tmp_path / "run"
    process = launch(*args, f"hydra.run.dir={run_dir}")
    while not (run_dir / "checkpoints" / "last.pt").exists() and process.poll() is None:
        time.sleep(0.05)
    return store, args, run_dir, process


@pytest.mark.slow
def test_a_stopped_run_is_killed_then_resumed_into_the_same_run(tmp_path):
    store, args, run_dir, process = checkpointed_run(tmp_path)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=120)
    run_id = held_id(run_dir)
    stopped = client_of(store).get_run(run_id)
    assert stopped.info.status == "KILLED" and stopped.data.tags["status"] == "interrupted"
    done = command(*args, f"hydra.run.dir={run_dir}", "resume=true")
    assert done.returncode == 0, done.stderr
    assert held_id(run_dir) == run_id and client_of(store).get_run(run_id).info.status == "FINISHED"
    steps = sorted({step for step, _ in curve(store, run_id, "train/loss")})
    assert steps == list(range(150))


def test_a_writer_that_stopped_is_one_line_and_the_run_goes_on(tmp_path, store, caplog):
    cfg, _ = compose_with_choices("logger=mlflow", f"logger.tracking_uri={store}")
    folder = tmp_path / "run"
    sink = MLflowSink(cfg.logger, folder, "x", "", {"seed": 1}, 0)
    sink.writer.process.kill()  # the writer dies (out of memory, killed by hand) before the run's end
    sink.writer.process.wait()
    with RunRecorder(folder, "x", "", {"seed": 1}, sinks=[sink]) as recorder:
        recorder.record_epoch(0, {"train/loss": 0.5})
        recorder.finish("completed")
    assert json.loads((folder / "metrics.json").read_text())["status"] == "completed"
    said = [r.getMessage() for r in caplog.records if "MLflow could not record" in r.getMessage()]
    assert said == [f"MLflow could not record {folder}: its writer process stopped (exit code -9)"]


@pytest.mark.slow
def test_a_killed_run_leaves_no_writer_and_keeps_what_it_sent(tmp_path):
    store, _, run_dir, process = checkpointed_run(tmp_path)
    writers = children_of(process.pid)  # the training process's only child: its MLflow writer
    assert len(writers) == 1
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)
    deadline = time.monotonic() + 120  # it makes the calls it was sent, then ends with its stdin
    while alive(writers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(writers[0])
    run_id = held_id(run_dir)
    assert client_of(store).get_run(run_id).info.status == "RUNNING"  # nobody said how it ended
    assert {step for step, _ in curve(store, run_id, "train/loss")} >= set(
        range(10)
    )  # sent at the checkpoint

import io

import pytest
from tensorboard.summary.writer.record_writer import RecordWriter

from src import events
from src.events import EventWriter, tfrecord
from tests import tensorboard_readers as tb
from tests.helpers import read_scalars


def test_records_are_framed_exactly_as_tensorboard_frames_them():
    for data in (b"", b"x", bytes(range(256)) * 3):
        reference = io.BytesIO()
        RecordWriter(reference).write(data)
        assert tfrecord(data) == reference.getvalue()


def test_scalars_are_readable_after_flush_and_in_step_order(tmp_path):
    writer = EventWriter(tmp_path / "run")
    for step in range(5):
        writer.scalar("train/loss", 1.0 / (step + 1), step)
    assert read_scalars(tmp_path) == {}  # still in memory
    writer.flush()
    steps, values = zip(*read_scalars(tmp_path)["train/loss"], strict=True)
    assert steps == (0, 1, 2, 3, 4)
    assert values == pytest.approx([1.0 / (s + 1) for s in range(5)])  # stored as float32
    writer.close()


def test_a_long_run_is_flushed_as_it_goes(tmp_path, monkeypatch):
    monkeypatch.setattr(events, "FLUSH_SECONDS", 0.0)
    writer = EventWriter(tmp_path / "run")
    writer.scalar("train/loss", 0.5, 0)
    assert read_scalars(tmp_path)["train/loss"] == [(0, 0.5)]
    writer.close()


def test_purge_step_hides_what_an_earlier_file_logged_after_the_checkpoint(tmp_path):
    first = EventWriter(tmp_path / "run")
    for step in range(6):
        first.scalar("train/loss", 1.0, step)
    first.close()
    resumed = EventWriter(tmp_path / "run", purge_step=4)  # the checkpoint was after epoch 4
    for step in range(4, 8):
        resumed.scalar("train/loss", 2.0, step)
    resumed.close()
    assert read_scalars(tmp_path)["train/loss"] == [(s, 1.0) for s in range(4)] + [
        (s, 2.0) for s in range(4, 8)
    ]


def test_a_crash_after_a_timed_flush_then_resume_shows_one_curve_in_every_tensorboard_loader(tmp_path):
    # The killed process: checkpoint after epoch 40, a timed flush up to epoch 59, then SIGKILL.
    killed = EventWriter(tmp_path / "run")
    for step in range(60):
        killed.scalar("train/loss", 1.0, step)
    killed.flush()  # and never closed
    resumed = EventWriter(tmp_path / "run", purge_step=40)  # in the same second: its file still sorts last
    for step in range(40, 100):
        resumed.scalar("train/loss", 2.0, step)
    resumed.close()
    expected = [(s, 1.0) for s in range(40)] + [(s, 2.0) for s in range(40, 100)]

    assert read_scalars(tmp_path)["train/loss"] == expected  # EventAccumulator
    assert tb.scalars(tb.python_loader(tmp_path), "run", "train/loss") == expected  # --load_fast=false
    with tb.fast_loader(tmp_path, lambda p: tb.scalars(p, "run", "train/loss")[-1:] == [(99, 2.0)]) as fast:
        assert tb.scalars(fast, "run", "train/loss") == expected  # the default, Rust loader

"""RunState: round trip, atomic save, safe load, refusal of another experiment, optimizer changes."""

import pytest
import torch

from src.checkpoint import CheckpointError, RunState
from src.errors import OutputError
from src.models import LogisticRegression

IDENTITY = {"model": "logistic", "optimizer": "torch.optim.Adam"}


def make_state(seed=0, lr=0.1):
    torch.manual_seed(seed)
    model = LogisticRegression(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    shuffle = torch.Generator().manual_seed(seed)
    history = {"train/loss": [(0, 0.7), (1, 0.5)]}
    state = RunState.capture(7, model, optimizer, shuffle, IDENTITY, "run", {"train/loss": 0.5}, history)
    return model, optimizer, shuffle, state


def test_round_trip_restores_weights_optimizer_and_random_state(tmp_path):
    model, optimizer, shuffle, state = make_state()
    state.save(tmp_path / "last.pt")
    expected_draw = torch.randperm(10, generator=shuffle)
    fresh_model, _, fresh_shuffle, _ = make_state(seed=1)
    fresh_optimizer = torch.optim.Adam(fresh_model.parameters(), lr=0.1)
    loaded = RunState.load(tmp_path / "last.pt")
    loaded.check_identity(IDENTITY, tmp_path / "last.pt")
    assert loaded.restore(fresh_model, fresh_optimizer, fresh_shuffle) == []  # nothing changed
    assert torch.equal(fresh_model.linear.weight, model.linear.weight)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1
    assert torch.equal(torch.randperm(10, generator=fresh_shuffle), expected_draw)
    assert (loaded.epoch, loaded.metrics, loaded.run_name) == (7, {"train/loss": 0.5}, "run")
    assert loaded.history == {"train/loss": [(0, 0.7), (1, 0.5)]}


def test_the_command_lines_optimizer_settings_win_on_restore(tmp_path):
    _, _, _, state = make_state(lr=0.1)
    model, _, shuffle, _ = make_state(seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5, betas=(0.8, 0.999))
    changes = state.restore(model, optimizer, shuffle)
    assert changes == ["optimizer.lr: 0.1 -> 0.5", "optimizer.betas: [0.9,0.999] -> [0.8,0.999]"]
    assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["betas"] == (0.8, 0.999)
    assert optimizer.state_dict()["state"][0]["step"] == 1  # the moments are the saved ones


def test_a_save_that_fails_halfway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    _, _, _, first = make_state()
    first.save(path)

    import pathlib

    real_open = pathlib.Path.open

    def open_then_fail(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if "w" in mode and self.name.endswith(".tmp"):
            handle.write(b"PK\x03\x04 half a zip")
            handle.close()
            raise OSError(28, "No space left on device")
        return handle

    monkeypatch.setattr(pathlib.Path, "open", open_then_fail)
    first.epoch = 8
    with pytest.raises(OutputError, match="cannot write .*last.pt: No space left on device; free some disk"):
        first.save(path)
    monkeypatch.undo()
    assert RunState.load(path).epoch == 7
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_a_file_that_needs_pickle_code_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*evil.pt: it would run code \(print\)"):
        RunState.load(path)
    assert "this would run on load" not in capsys.readouterr().out


def test_damaged_missing_and_foreign_checkpoints_are_named(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt.*damaged"):
        RunState.load(tmp_path / "bad.pt")
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="random.pt: it is not a PyTorch file, or damaged"):
        RunState.load(tmp_path / "random.pt")
    with pytest.raises(CheckpointError, match="none.pt does not exist"):
        RunState.load(tmp_path / "none.pt")
    torch.save(LogisticRegression(1, 1).state_dict(), tmp_path / "weights.pt")  # a plain state_dict
    with pytest.raises(CheckpointError, match="weights.pt is not a checkpoint of this project"):
        RunState.load(tmp_path / "weights.pt")


def test_a_checkpoint_of_another_experiment_is_refused_naming_what_differs(tmp_path):
    _, _, _, state = make_state()
    with pytest.raises(CheckpointError, match="another model config"):
        state.check_identity({"model": "mlp"}, tmp_path / "last.pt")
    state.identity = {"dataset": "classes:\n- 3\n- 8\nseed: 7\n"}
    with pytest.raises(CheckpointError, match=r"another dataset config \(seed: 7 -> 8\)"):
        state.check_identity({"dataset": "classes:\n- 3\n- 8\nseed: 8\n"}, tmp_path / "last.pt")

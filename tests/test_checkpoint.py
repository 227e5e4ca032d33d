import pytest
import torch

from src.checkpoint import CheckpointError, capture_state, load_checkpoint, restore_state, save_checkpoint
from src.models import LogisticRegression


def make_state(seed=0):
    torch.manual_seed(seed)
    model = LogisticRegression(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(2, 3)).sum().backward()
    optimizer.step()
    shuffle = torch.Generator().manual_seed(seed)
    history = {"train/loss": [(0, 0.7), (1, 0.5)]}
    state = capture_state(
        model, optimizer, shuffle, 7, {"model": "logistic"}, "run", {"train/loss": 0.5}, history
    )
    return model, optimizer, shuffle, state


def test_round_trip_restores_weights_optimizer_and_random_state(tmp_path):
    model, optimizer, shuffle, state = make_state()
    save_checkpoint(tmp_path / "last.pt", state)
    expected_draw = torch.randperm(10, generator=shuffle)
    fresh_model, _, fresh_shuffle, _ = make_state(seed=1)
    fresh_optimizer = torch.optim.Adam(fresh_model.parameters(), lr=0.1)
    loaded = load_checkpoint(tmp_path / "last.pt")
    restore_state(
        loaded, tmp_path / "last.pt", fresh_model, fresh_optimizer, fresh_shuffle, {"model": "logistic"}
    )
    assert torch.equal(fresh_model.linear.weight, model.linear.weight)
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1
    assert torch.equal(torch.randperm(10, generator=fresh_shuffle), expected_draw)
    assert (loaded["epoch"], loaded["metrics"], loaded["run_name"]) == (7, {"train/loss": 0.5}, "run")
    assert loaded["history"] == {"train/loss": [[0, 0.7], [1, 0.5]]}


def test_a_save_that_fails_halfway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    _, _, _, first = make_state()
    save_checkpoint(path, first)

    def crash_halfway(obj, file):
        with open(file, "wb") as handle:
            handle.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, {**first, "epoch": 8})
    assert load_checkpoint(path)["epoch"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


class Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_a_file_that_needs_pickle_code_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt"):
        load_checkpoint(path)
    assert "this would run on load" not in capsys.readouterr().out


def test_damaged_and_missing_checkpoints_are_named(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at .*none.pt"):
        load_checkpoint(tmp_path / "none.pt")


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    model, optimizer, shuffle, state = make_state()
    with pytest.raises(CheckpointError, match="another model config"):
        restore_state(state, tmp_path / "last.pt", model, optimizer, shuffle, {"model": "mlp"})

"""Hydra's and OmegaConf's errors about a command line, said in the project's one line: composed here by
Hydra's own `compose`, which raises what `python -m src.train` gets from Hydra (tests/test_cli.py runs the
real command)."""

import pytest

from src.hydra_errors import is_command_line_error, one_line
from tests.helpers import compose_with_hydra

CASES = [
    (["trainer.epoch=5"], "trainer.epoch is not a setting; did you mean trainer.epochs?"),
    (["optimizer=adm"], "optimizer=adm is not an option; did you mean optimizer=adam? (options: adam, adamw"),
    (["dataset=mnsit"], "dataset=mnsit is not an option; did you mean dataset=mnist?"),
    (["optimizer.lr=abc"], "optimizer.lr takes a number, not 'abc'"),
    (["trainer.epochs=abc"], "trainer.epochs takes an integer, not 'abc'"),
    (["optimizer.lr="], "optimizer.lr takes a number, not ''"),
    (["dataset=mnist_binary", "dataset.classes=[3,a]"],
     "dataset.classes[1] takes an integer, not 'a' (dataset.classes=[3,a])"),
    (["device=tpu"], "device=tpu is not a choice; choose one of cpu, cuda, mps, auto"),
    (["objective.direction=up"], "objective.direction=up is not a choice; choose one of minimize, maximize"),
    (["trainer.test_weights=middle"], "trainer.test_weights=middle is not a choice; choose one of best"),
    (["model=mlp", "model.hidden_size=1e9"], "model.hidden_size takes an integer, not '1e9'"),
    (["dataset.root=/data"], "dataset.root is not a setting; dataset has: inputs, labels, predict_inputs"),
    (["dataset=mnist_binary", "dataset.root=/my,data"],
     "dataset.root=/my,data has a comma: add -m to sweep over its values; for one value, quote it for "
     "Hydra (\"dataset.root='/my,data'\" in the shell)"),
    (["dataset=mnist_binary", "dataset.root=/my", "data"],
     "'data' is not an override (key=value): a value with spaces must be quoted"),
    (["optimizer.lr=(1"], "Hydra cannot read the override 'optimizer.lr=(1'"),
]  # fmt: skip


@pytest.mark.parametrize("overrides,line", CASES, ids=[" ".join(case[0]) for case in CASES])
def test_a_command_line_hydra_cannot_compose_is_one_line_naming_the_fix(overrides, line):
    with pytest.raises(Exception) as raised:
        compose_with_hydra(*overrides)
    assert is_command_line_error(raised.value)
    said = one_line(raised.value)
    assert said.startswith(line) and "\n" not in said

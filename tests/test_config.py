"""Config schema: every option composes and validates, types and names are checked, values said once."""

import dataclasses

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING
from omegaconf.errors import ConfigKeyError, ValidationError

from src import config
from src.config import validate
from src.errors import ConfigError
from tests.helpers import CONF, compose_config, compose_with_choices, compose_with_hydra

# Read from conf/, so that a new YAML file is covered without editing this test.
GROUPS = ("dataset", "model", "loss", "optimizer", "scheduler", "trainer", "experiment")
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]


def test_defaults_are_the_tutorial():
    cfg = compose_config()
    assert cfg.dataset.inputs == [1.0, 2.0, 3.0] and cfg.dataset.labels == [0, 0, 1]
    assert cfg.model._target_ == "src.models.LogisticRegression"
    assert cfg.loss._target_ == "src.losses.BinaryCrossEntropy" and cfg.loss.reduction == "sum"
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.01
    assert cfg.trainer.epochs == 1000 and cfg.trainer.batch_size is None and cfg.device == "cpu"
    validate(cfg)


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_composes_and_validates(group, option):
    cfg, choices = compose_with_choices(f"{group}={option}")
    assert choices[group] == option
    required = [line.split(":")[0] for line in (CONF / group / f"{option}.yaml").read_text().splitlines()
                if ": ???" in line]  # fmt: skip
    if required:  # values only the user can give (dataset=csv: the file and its target column)
        with pytest.raises(ConfigError, match=f"{group}.{required[0]}(, .*)? must be given: add {group}."):
            validate(cfg)
    else:
        validate(cfg)


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps", "auto"])
def test_device_is_one_word(device):
    assert compose_config(f"device={device}").device == device


def test_every_value_has_one_home():
    # Values live in conf/; a schema holds types and wiring (_target_, _partial_) only.
    for options in config.SCHEMAS.values():
        for schema in options.values():
            for schema_field in dataclasses.fields(schema):
                if not schema_field.name.startswith("_"):
                    assert schema_field.default is MISSING, f"{schema.__name__}.{schema_field.name}"
    # An option's YAML does not repeat what its schema's parent option already says.
    for path in (CONF / "recipe").glob("*.yaml"):
        assert "batch_size: 64" not in path.read_text() or path.stem == "image_classes"


def test_dataset_recipe_applies_and_the_command_line_wins():
    mnist = compose_config("dataset=mnist_binary")
    assert (mnist.trainer.batch_size, mnist.loss.reduction, mnist.optimizer.lr) == (64, "mean", 0.1)
    assert (mnist.trainer.epochs, compose_config("dataset=fashion_mnist_binary").trainer.epochs) == (20, 30)
    adam = compose_config("dataset=mnist_binary", "optimizer=adam")
    assert adam.optimizer.lr == 0.001  # the SGD-specific rate does not leak into Adam
    mine = compose_config("dataset=mnist_binary", "optimizer.lr=0.5", "trainer.batch_size=8")
    assert (mine.optimizer.lr, mine.trainer.batch_size) == (0.5, 8)


def test_presets_compose():
    assert compose_config("experiment=tutorial") == compose_config()
    cfg, choices = compose_with_choices("experiment=bce_vs_ce")
    assert choices["dataset"] == "mnist_binary"
    assert compose_with_choices("experiment=bce_vs_ce_seeds")[1]["dataset"] == "mnist_binary"


def test_slurm_launcher_config_composes():
    cfg = compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    for key in ("timeout_min", "cpus_per_task", "gpus_per_node", "mem_gb", "array_parallelism"):
        assert key in launcher


def test_preset_sweep_lists_only_what_it_changes():
    preset = yaml.safe_load((CONF / "experiment" / "bce_vs_ce.yaml").read_text())
    assert preset["hydra"]["sweeper"]["params"] == {"loss": "bce,ce", "optimizer.lr": "0.025,0.05,0.1,0.2"}
    seeds = yaml.safe_load((CONF / "experiment" / "bce_vs_ce_seeds.yaml").read_text())
    assert seeds["hydra"]["sweeper"]["params"] == {"loss": "bce,ce", "seed": "range(5)"}


@pytest.mark.parametrize(
    "override,error",
    [
        ("optimizer.lr=abc", ValidationError),
        ("trainer.epochs=ten", ValidationError),
        ("optimizer.lrr=0.1", ConfigKeyError),
        ("device=tpu", ValidationError),
        ("dataset=imagenet", ConfigCompositionException),
    ],
)
def test_wrong_types_and_unknown_names_fail_while_composing(override, error):
    with pytest.raises((error, ConfigCompositionException)):
        compose_config(override)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=-1"], "optimizer.lr must be positive"),
        (["trainer.epochs=0"], "trainer.epochs must be at least 1"),
        (["trainer.batch_size=0"], "trainer.batch_size must be at least 1"),
        (["trainer.threads=two"], "trainer.threads must be auto or a number"),
        (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay must be >= 0"),
        (["optimizer=adam", "optimizer.betas=[2,3]"], r"optimizer.betas must be in \[0, 1\)"),
        (["dataset=mnist_binary", "dataset.classes=[3,3]"], r"dataset.classes must differ.*\[3\] repeated"),
        (["dataset=mnist", "dataset.classes=[0,1,2,1]"], r"dataset.classes must differ.*\[1\] repeated"),
        (["dataset=mnist_binary", "dataset.classes=[3,10]"], "must be classes 0-9"),
        (["dataset=fashion_mnist", "dataset.classes=[-1,4]"], "must be classes 0-9"),
        (["dataset=mnist_binary", "dataset.classes=[3]"], "must name at least two classes"),
        (["dataset=fashion_mnist", "dataset.classes=[]"], "must name at least two classes"),
        (["dataset=mnist_binary", "dataset.val_fraction=1.0"], "val_fraction must be in"),
        (["dataset=mnist_binary", "dataset.std=0"], "dataset.std must be positive"),
        (["model=mlp", "model.hidden_size=0"], "model.hidden_size must be at least 1"),
        (["loss.reduction=none"], "loss.reduction must be sum or mean, got none: training needs one number"),
        (["dataset=mnist", "loss=bce", "loss.reduction=median"], "loss.reduction must be sum or mean"),
        (["dataset.labels=[0,2,1]"], "dataset.labels must be 0 or 1"),
        (["objective.metric=val/auc"], "objective.metric must be one of"),
        (["seed=99999999999999999999"], "seed must be between"),
        # values a run could only diverge with, refused before it trains
        (["optimizer.weight_decay=inf"], r"optimizer.weight_decay=inf is not a finite number"),
        (["dataset=mnist_binary", "dataset.mean=nan"], r"dataset.mean=nan is not a finite number"),
        (["scheduler=cosine", "scheduler.eta_min=inf"], r"scheduler.eta_min=inf is not a finite number"),
        (["optimizer.lr=-inf"], r"optimizer.lr=-inf is not a finite number"),
        (
            ["optimizer=lbfgs", "optimizer.line_search_fn=foo"],
            "optimizer.line_search_fn must be strong_wolfe or null",
        ),
        (["dataset.inputs=[1.0,nan,3.0]"], r"dataset.inputs\[1\]=nan is not a finite number"),
    ],
)
def test_out_of_range_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))

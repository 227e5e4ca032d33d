import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from src.config import validate
from src.errors import ConfigError

OPTIONS = {
    "dataset": ["toy", "mnist_binary", "fashion_mnist_binary"],
    "model": ["logistic", "mlp"],
    "loss": ["bce", "ce"],
    "optimizer": ["sgd", "adam", "adamw", "lbfgs"],
    "device": ["cpu", "cuda", "mps", "auto"],
}


def test_defaults_are_the_tutorial(compose_config):
    cfg = compose_config()
    assert cfg.dataset.inputs == [1.0, 2.0, 3.0] and cfg.dataset.labels == [0, 0, 1]
    assert cfg.model._target_ == "src.models.LogisticRegression"
    assert cfg.loss._target_ == "src.losses.BinaryCrossEntropy" and cfg.loss.reduction == "sum"
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.01
    assert cfg.trainer.epochs == 1000 and cfg.trainer.batch_size is None
    validate(cfg)


@pytest.mark.parametrize("group,option", [(g, o) for g, options in OPTIONS.items() for o in options])
def test_every_option_composes_and_validates(compose_config, group, option):
    validate(compose_config(f"{group}={option}"))


def test_dataset_recipe_applies_and_the_command_line_wins(compose_config):
    mnist = compose_config("dataset=mnist_binary")
    assert (mnist.trainer.batch_size, mnist.loss.reduction, mnist.optimizer.lr) == (64, "mean", 0.1)
    adam = compose_config("dataset=mnist_binary", "optimizer=adam")
    assert adam.optimizer.lr == 0.001  # the SGD-specific rate does not leak into Adam
    mine = compose_config("dataset=mnist_binary", "optimizer.lr=0.5", "trainer.batch_size=8")
    assert (mine.optimizer.lr, mine.trainer.batch_size) == (0.5, 8)


@pytest.mark.parametrize(
    "override,error",
    [
        ("optimizer.lr=abc", ValidationError),
        ("trainer.epochs=ten", ValidationError),
        ("optimizer.lrr=0.1", ConfigKeyError),
        ("loss.reduction=median", ValidationError),
        ("dataset=imagenet", ConfigCompositionException),
    ],
)
def test_wrong_types_and_unknown_names_fail_while_composing(compose_config, override, error):
    with pytest.raises((error, ConfigCompositionException)):
        compose_config(override)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=-1"], "optimizer.lr must be positive"),
        (["trainer.epochs=0"], "trainer.epochs must be at least 1"),
        (["trainer.batch_size=0"], "trainer.batch_size must be at least 1"),
        (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay must be >= 0"),
        (["dataset=mnist_binary", "dataset.classes=[3,3]"], "dataset.classes must differ"),
        (["dataset=mnist_binary", "dataset.classes=[3,10]"], "must be digits 0-9"),
        (["dataset=mnist_binary", "dataset.classes=[1,2,3]"], "must name two classes"),
        (["dataset=mnist_binary", "dataset.val_fraction=1.0"], "val_fraction must be in"),
        (["model=mlp", "model.hidden_size=0"], "model.hidden_size must be at least 1"),
        (["dataset.labels=[0,2,1]"], "dataset.labels must be 0 or 1"),
    ],
)
def test_out_of_range_values_are_refused(compose_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))

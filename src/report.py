"""What a finished run reports besides its curves: test metrics, predictions, weights and pictures."""

import math

import numpy as np
import torch
from PIL import Image
from torch import nn

from src.data import ClassificationData
from src.losses import Head
from src.metrics import TEST, TRAIN_LOSS, VAL_LOSS, tagged
from src.models import LogisticRegression
from src.pictures import line_chart, mistakes_grid, weight_map
from src.trainer import evaluate, predict

Curves = dict[str, list[tuple[int, float]]]


def test_metrics(model: nn.Module, head: Head, data: ClassificationData) -> dict[str, float]:
    """test/loss and test/accuracy when the test split has labels; nothing otherwise."""
    if data.test is None or data.test.labels is None:
        return {}
    return tagged(TEST, evaluate(model, head, data.test))


def predictions(model: nn.Module, head: Head, inputs: torch.Tensor) -> dict[str, float]:
    """Positive-class probability per input, keyed by the input (`{"4.0": 0.88}`)."""
    probabilities, _ = predict(model, head, inputs)
    positive = probabilities[:, 1].tolist()
    keys = [str(row[0]) if len(row) == 1 else str(i) for i, row in enumerate(inputs.tolist())]
    return dict(zip(keys, positive, strict=True))


def parameters(model: nn.Module) -> dict[str, list[float]]:
    """The model's weights as lists, when there are few enough to print (the toy set's w and b)."""
    if sum(p.numel() for p in model.parameters()) > 8:
        return {}
    short = {"weight": "w", "bias": "b"}  # the tutorial's names
    return {short.get(name.rsplit(".", 1)[-1], name): p.detach().cpu().flatten().tolist()
            for name, p in model.named_parameters()}  # fmt: skip


def run_pictures(
    model: nn.Module, head: Head, data: ClassificationData, history: Curves, run_name: str = ""
) -> dict[str, Image.Image]:
    """Every picture that fits the run: its loss curves (titled with `run_name`); for a linear model on
    square images the weight map; for a labelled test split of images its mistakes."""
    losses = {tag: history[tag] for tag in (TRAIN_LOSS, VAL_LOSS) if history.get(tag)}
    title = f"loss per epoch: {run_name}" if run_name else "loss per epoch"
    pictures = {"loss_curve": line_chart(losses, title, f"loss ({head.reduction})")}
    side = math.isqrt(data.num_features)
    if side * side != data.num_features or side == 1:  # not images
        return pictures
    negative, positive = data.class_names[0], data.class_names[-1]
    if isinstance(model, LogisticRegression):
        weight = model.linear.weight.detach().cpu()
        evidence = weight[0] if len(weight) == 1 else weight[1] - weight[0]  # positive minus negative logit
        pictures["weight_map"] = weight_map(evidence.numpy(), positive, negative)
    test = data.test
    if test is not None and test.labels is not None:
        probabilities, predicted = predict(model, head, test.inputs)
        wrong = predicted != test.labels
        pictures["misclassified"] = mistakes_grid(
            test.inputs[wrong].cpu().numpy(),
            probabilities[wrong][:, 1].cpu().numpy(),
            test.labels[wrong].cpu().numpy().astype(np.int64),
            data.class_names,
        )
    return pictures

"""What a finished run reports besides its curves: test metrics, predictions, weights and pictures."""

import csv
import io
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch import nn

from src.data import ClassificationData, Split
from src.inference import fit_covariance, setup_refusal, statistics
from src.losses import Head
from src.metrics import TEST, TEST_ACCURACY_PER_CLASS, TRAIN_LOSS, VAL_LOSS, per_class_tag, tagged
from src.models import LogisticRegression
from src.pictures import confusion_matrix, line_chart, mistakes_grid, weight_map, weight_templates
from src.scores import calibration_bins, expected_calibration_error, scores
from src.trainer import evaluate, predict

Curves = dict[str, list[tuple[int, float]]]


@dataclass(frozen=True)
class Tested:
    """The model's predictions for the test split, made once for every report that reads them."""

    split: Split
    probabilities: torch.Tensor  # (N, classes)
    predicted: torch.Tensor  # (N,) class indices


def test_predictions(model: nn.Module, head: Head, data: ClassificationData) -> Tested | None:
    """The test split's predictions; None without a test split."""
    if data.test is None:
        return None
    probabilities, predicted = predict(model, head, data.test.inputs)
    return Tested(data.test, probabilities, predicted)


def test_metrics(model: nn.Module, head: Head, tested: Tested | None) -> dict[str, float]:
    """test/loss and test/accuracy when the test split has labels, and the scores of its predicted
    probabilities (src/scores.py: test/roc_auc, test/log_loss, ...); nothing otherwise."""
    if tested is None or tested.split.labels is None:
        return {}
    return tagged(
        TEST, evaluate(model, head, tested.split) | scores(tested.probabilities, tested.split.labels)
    )


PREDICTIONS_FILE = "predictions.csv"


def predictions_table(tested: Tested | None, names: tuple[str, ...]) -> bytes | None:
    """predictions.csv of the test split: `index,label,predicted` (class names; label empty where the
    test inputs are unlabeled) and one `p_<class name>` column per class; None without a test split."""
    if tested is None:
        return None
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["index", "label", "predicted", *(f"p_{name}" for name in names)])
    predicted = tested.predicted.tolist()
    labels = [None] * len(predicted) if tested.split.labels is None else tested.split.labels.tolist()
    for index, (label, guess, row) in enumerate(
        zip(labels, predicted, tested.probabilities.tolist(), strict=True)
    ):
        writer.writerow(
            [index, "" if label is None else names[label], names[guess], *(f"{p:.6g}" for p in row)]
        )
    return text.getvalue().encode()


def confusion_counts(tested: Tested | None, size: int) -> np.ndarray | None:
    """(classes, classes) counts of the labelled test split: true class by row, predicted by column."""
    if tested is None or tested.split.labels is None:
        return None
    pairs = tested.split.labels * size + tested.predicted
    return torch.bincount(pairs, minlength=size * size).view(size, size).cpu().numpy()


def accuracy_per_class(counts: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """metrics.json's `test/accuracy_per_class`: each true class's share predicted right, by class name."""
    totals = counts.sum(axis=1)
    return {name: float(counts[i, i] / totals[i]) if totals[i] else float("nan")
            for i, name in enumerate(class_names)}  # fmt: skip


def per_class_scalars(per_class: dict[str, float]) -> dict[str, float]:
    """The same accuracies as TensorBoard scalars, one tag per class."""
    return {per_class_tag(TEST_ACCURACY_PER_CLASS, name): value for name, value in per_class.items()}


def predictions(model: nn.Module, head: Head, inputs: torch.Tensor) -> dict[str, float]:
    """Positive-class probability per input, keyed by the input (`{"4.0": 0.88}`): the toy set's inputs,
    which have two classes."""
    return keyed_predictions(inputs, predict(model, head, inputs)[0])


def keyed_predictions(inputs: torch.Tensor, probabilities: torch.Tensor) -> dict[str, float]:
    """`predictions` of probabilities already made for `inputs`."""
    positive = probabilities[:, 1].tolist()
    keys = [str(row[0]) if len(row) == 1 else str(i) for i, row in enumerate(inputs.tolist())]
    return dict(zip(keys, positive, strict=True))


COEFFICIENTS_FILE = "coefficients.csv"


def log_odds_coefficients(model: nn.Module, data: ClassificationData) -> torch.Tensor | None:
    """A logistic model's coefficients on the inputs it trained on, intercept first: (1, 1 + features),
    the log-odds of the positive class, for two classes (CE's two logits: their difference); one row per
    class beyond. None for other models or unnamed features (there is nothing to name them by)."""
    if not isinstance(model, LogisticRegression) or data.feature_names is None:
        return None
    weight = model.linear.weight.detach().double().cpu()
    bias = model.linear.bias.detach().double().cpu()
    if weight.shape[0] == 2 and data.num_classes == 2:  # two logits (CE): the log-odds is their difference
        weight, bias = (weight[1] - weight[0]).view(1, -1), (bias[1] - bias[0]).view(1)
    return torch.cat([bias.unsqueeze(1), weight], dim=1)


def to_original_units(data: ClassificationData) -> torch.Tensor:
    """The linear map from coefficients on standardized inputs to coefficients in the features' own
    units, (1 + features) square: z = (x - mean) / std, so w.z + b = (w / std).x + b - (w / std).mean.
    Coefficients go through it as A @ c, their covariance as A @ C @ A.T (linear: the delta method is
    exact)."""
    count = data.num_features
    scaling = torch.tensor(data.feature_scaling or [(0.0, 1.0)] * count, dtype=torch.float64)
    mean, std = scaling[:, 0], scaling[:, 1]
    transform = torch.zeros(count + 1, count + 1, dtype=torch.float64)
    transform[0, 0] = 1.0
    transform[0, 1:] = -mean / std
    transform[1:, 1:] = torch.diag(1 / std)
    return transform


def coefficients_table(
    model: nn.Module, data: ClassificationData, covariance: torch.Tensor | None = None
) -> bytes | None:
    """coefficients.csv of a logistic model on named features: `feature,weight`, `(intercept)` first,
    in the features' own units (the standardization undone), as the log-odds of the positive class; for
    more classes one `weight_<class>` column each. With the `covariance` of a two-class fit's
    coefficients (src/inference.py), also `std_error,z,p_value,ci_low,ci_high`, in the same units. None
    for other models or unnamed features."""
    coefficients = log_odds_coefficients(model, data)
    if coefficients is None or data.feature_names is None:
        return None
    transform = to_original_units(data)
    own = coefficients @ transform.T  # each row through the map
    columns = ["weight"] if len(own) == 1 else [f"weight_{name}" for name in data.class_names]
    values = [own[row].tolist() for row in range(len(own))]
    if covariance is not None:
        assert len(own) == 1, "statistics are of a two-class fit"
        found = statistics(own[0], transform @ covariance @ transform.T)
        columns += list(vars(found))
        values += list(vars(found).values())
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["feature", *columns])
    for index, name in enumerate(["(intercept)", *data.feature_names]):
        writer.writerow([name, *(f"{column[index]:.10g}" for column in values)])
    return text.getvalue().encode()


def coefficients_report(
    cfg: DictConfig, model: nn.Module, head: Head, data: ClassificationData
) -> tuple[bytes | None, str | None]:
    """coefficients.csv (None where `coefficients_table` has none) and, when it has no statistics, why
    (None when it has them, or has no table)."""
    coefficients = log_odds_coefficients(model, data)
    if coefficients is None:
        return None, None
    covariance: torch.Tensor | str | None = setup_refusal(cfg, head, data)
    if covariance is None:
        assert data.train.labels is not None
        covariance = fit_covariance(coefficients[0], data.train.inputs, data.train.labels)
    if isinstance(covariance, str):
        return coefficients_table(model, data), covariance
    return coefficients_table(model, data, covariance), None


def parameters(model: nn.Module) -> dict[str, list[float]]:
    """The model's weights as lists, when there are few enough to print (the toy set's w and b)."""
    if sum(p.numel() for p in model.parameters()) > 8:
        return {}
    short = {"weight": "w", "bias": "b"}  # the tutorial's names
    return {short.get(name.rsplit(".", 1)[-1], name): p.detach().cpu().flatten().tolist()
            for name, p in model.named_parameters()}  # fmt: skip


def reliability_diagram(probabilities: torch.Tensor, labels: torch.Tensor) -> Image.Image:
    """How often the positive class is the answer against the probability predicted for it, bin by bin
    (src/scores.py's 15 equal-width bins, those that hold predictions), beside the diagonal that a
    calibrated model follows; the title gives the expected calibration error."""
    positive, truth = probabilities[:, 1].double().cpu(), (labels.cpu() == 1).double()
    bins = calibration_bins(positive, truth)
    curves = {"this model": [(predicted, observed) for predicted, observed, _ in bins],
              "calibrated": [(0.0, 0.0), (1.0, 1.0)]}  # fmt: skip
    title = f"reliability: ECE {expected_calibration_error(positive, truth):.3f}"
    return line_chart(curves, title, "observed frequency", x_label="predicted probability")


def run_pictures(
    model: nn.Module,
    head: Head,
    data: ClassificationData,
    history: Curves,
    tested: Tested | None = None,
    counts: np.ndarray | None = None,
    run_name: str = "",
) -> dict[str, Image.Image]:
    """Every picture that fits the run: its loss curves (titled with `run_name`); for two classes and a
    labelled test split (`tested`) its reliability diagram; for a linear model on images the weight map
    (one per class beyond two); for a labelled test split of images its confusion matrix (`counts`) and
    its mistakes."""
    losses = {tag: history[tag] for tag in (TRAIN_LOSS, VAL_LOSS) if history.get(tag)}
    title = f"loss per epoch: {run_name}" if run_name else "loss per epoch"
    pictures = {"loss_curve": line_chart(losses, title, f"loss ({head.reduction})")}
    labels = tested.split.labels if tested is not None else None
    if tested is not None and labels is not None and data.num_classes == 2:
        pictures["reliability"] = reliability_diagram(tested.probabilities, labels)
    if data.image_shape is None:  # not images: the toy set, a table
        return pictures
    channels, height, width = data.image_shape
    if isinstance(model, LogisticRegression):
        # Per pixel, its weights summed over the channels: what making it brighter does to a logit.
        weight = model.linear.weight.detach().cpu().view(-1, channels, height, width).sum(dim=1)
        if data.num_classes == 2:
            evidence = weight[0] if len(weight) == 1 else weight[1] - weight[0]  # positive minus negative
            pictures["weight_map"] = weight_map(evidence.numpy(), data.class_names[1], data.class_names[0])
        else:
            pictures["weight_map"] = weight_templates(weight.numpy(), data.class_names)
    if tested is not None and labels is not None and counts is not None:
        pictures["confusion_matrix"] = confusion_matrix(counts, data.class_names)
        probabilities, predicted = tested.probabilities, tested.predicted
        wrong = predicted != labels
        confidence = probabilities[wrong].gather(1, predicted[wrong].unsqueeze(1)).squeeze(1)
        pictures["misclassified"] = mistakes_grid(
            tested.split.inputs[wrong].cpu().view(-1, channels, height, width).numpy(),
            labels[wrong].cpu().numpy().astype(np.int64),
            predicted[wrong].cpu().numpy().astype(np.int64),
            confidence.cpu().numpy(),
            data.class_names,
        )
    return pictures

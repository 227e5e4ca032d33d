"""Standard errors of a logistic fit (src/inference.py): equal to statsmodels' Logit on real tables, and
refused in one line wherever the fit is not a maximum of the likelihood."""

import csv
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from src.data import ClassificationData, Split
from src.inference import fit_covariance, setup_refusal
from src.losses import BinaryCrossEntropy, CrossEntropy
from tests.helpers import compose_config, train_here

sm = pytest.importorskip("statsmodels.api")

EVERY_ROW = ["dataset.val_fraction=0", "dataset.test_fraction=0", "objective.metric=train/loss"]
COLUMNS = ["feature", "weight", "std_error", "z", "p_value", "ci_low", "ci_high"]


def read_coefficients(run_dir):
    with (run_dir / "coefficients.csv").open() as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, {
            row.pop("feature"): {k: float(v) for k, v in row.items()} for row in reader
        }


def fit_table(tmp_path, frame, target, *overrides):
    """Train on every row of `frame` (a pandas DataFrame) as dataset=csv; coefficients.csv's header and
    rows by feature."""
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    run_dir = tmp_path / "run"
    train_here(run_dir, "dataset=csv", f"dataset.path={path}", f"dataset.target={target}", *EVERY_ROW,
               *overrides)  # fmt: skip
    return read_coefficients(run_dir)


def assert_like_statsmodels(header, rows, frame, target):
    """The weights within 1e-3 and the standard errors within 1% of statsmodels' Logit on the same rows,
    and z, p-values and intervals as it computes them."""
    features = [name for name in frame.columns if name != target]
    fit = sm.Logit(frame[target], sm.add_constant(frame[features])).fit(disp=0, method="newton", maxiter=100)
    interval = fit.conf_int(alpha=0.05)
    assert header == COLUMNS
    assert list(rows) == ["(intercept)", *features]
    for name, theirs in zip(rows, ["const", *features], strict=True):
        ours = rows[name]
        assert ours["weight"] == pytest.approx(fit.params[theirs], abs=1e-3), name
        assert ours["std_error"] == pytest.approx(fit.bse[theirs], rel=0.01), name
        assert ours["z"] == pytest.approx(fit.tvalues[theirs], rel=0.01), name
        assert ours["p_value"] == pytest.approx(fit.pvalues[theirs], rel=0.05, abs=1e-12), name
        assert ours["ci_low"] == pytest.approx(interval.loc[theirs, 0], abs=0.01 * fit.bse[theirs] + 1e-3)
        assert ours["ci_high"] == pytest.approx(interval.loc[theirs, 1], abs=0.01 * fit.bse[theirs] + 1e-3)


@pytest.mark.slow  # trains on 6366 rows: about 3 s
def test_an_unregularized_lbfgs_fit_gives_statsmodels_standard_errors_on_a_real_table(tmp_path):
    # Fair's affairs survey (6366 rows, 8 features, shipped with statsmodels): did she have an affair.
    frame = sm.datasets.fair.load_pandas().data
    frame["affair"] = (frame.pop("affairs") > 0).astype(int)
    header, rows = fit_table(tmp_path, frame, "affair", "optimizer=lbfgs", "trainer.epochs=30")
    assert_like_statsmodels(header, rows, frame, "affair")
    assert rows["rate_marriage"]["p_value"] < 1e-50 and rows["occupation_husb"]["p_value"] > 0.5


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_the_spector_table_gives_statsmodels_numbers_with_either_loss(tmp_path, loss):
    # statsmodels' own Logit example (32 students). LBFGS's line search compares float32 losses and
    # stalls within 1.6e-3 of the intercept (-13.02); its fixed steps get within 1e-4.
    frame = sm.datasets.spector.load_pandas().data
    fixed_steps = ["optimizer=lbfgs", "trainer.epochs=30", "optimizer.line_search_fn=null"]
    header, rows = fit_table(tmp_path, frame, "GRADE", *fixed_steps, f"loss={loss}", "loss.reduction=sum")
    assert_like_statsmodels(header, rows, frame, "GRADE")


def spector_data() -> ClassificationData:
    frame = sm.datasets.spector.load_pandas().data
    inputs = torch.tensor(frame[["GPA", "TUCE", "PSI"]].to_numpy(), dtype=torch.float32)
    labels = torch.tensor(frame["GRADE"].to_numpy(), dtype=torch.long)
    return ClassificationData(Split(inputs, labels), None, None, ("0", "1"), ("GPA", "TUCE", "PSI"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.weight_decay=0.01"], "optimizer.weight_decay=0.01 penalizes the fit"),
        (["optimizer=adamw"], "optimizer.weight_decay=0.01 penalizes the fit"),
        (["trainer.batch_size=8"], "trainer.batch_size=8 trains on mini-batches of the 32 training rows"),
    ],
)
def test_a_set_up_that_is_no_maximum_likelihood_fit_says_why_in_one_line(overrides, message):
    reason = setup_refusal(compose_config(*overrides), BinaryCrossEntropy("sum"), spector_data())
    assert reason is not None and message in reason and "\n" not in reason


def test_the_set_up_of_an_unpenalized_full_batch_fit_is_accepted():
    data = spector_data()
    assert setup_refusal(compose_config("optimizer=lbfgs"), BinaryCrossEntropy("sum"), data) is None
    assert (
        setup_refusal(compose_config("trainer.batch_size=32"), CrossEntropy("sum", pos_weight=None), data)
        is None
    )  # one batch: all rows
    three = ClassificationData(data.train, None, None, ("a", "b", "c"), data.feature_names)
    reason = setup_refusal(compose_config(), CrossEntropy("sum", 3), three)
    assert reason is not None and reason.startswith("they are given for two classes, and the data has 3")


def mle(inputs: torch.Tensor, labels: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """(intercept, weights) after `steps` of float64 LBFGS on the summed loss."""
    design = torch.cat([torch.ones(len(inputs), 1, dtype=torch.float64), inputs.double()], dim=1)
    theta = torch.zeros(design.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            design @ theta, labels.double(), reduction="sum"
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return theta.detach()


def test_the_covariance_at_the_maximum_is_statsmodels_and_a_point_short_of_it_is_refused():
    data = spector_data()
    inputs, labels = data.train.inputs, data.train.labels
    assert labels is not None
    estimate = mle(inputs, labels)
    fit = sm.Logit(labels.numpy(), sm.add_constant(inputs.double().numpy())).fit(disp=0)
    covariance = fit_covariance(estimate, inputs, labels)
    assert isinstance(covariance, torch.Tensor)
    np.testing.assert_allclose(covariance.numpy(), fit.cov_params(), rtol=1e-4)
    short = estimate.clone()
    short[1] -= 0.2 * float(fit.bse[1])  # a fifth of a standard error away
    reason = fit_covariance(short, inputs, labels)
    assert isinstance(reason, str) and reason.startswith("the fit has not converged (one more Newton step")


def test_separable_classes_and_collinear_features_have_no_standard_errors():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(60, 2)))
    separated = (x[:, 0] > 0).long()
    reason = fit_covariance(mle(x, separated), x, separated)
    assert isinstance(reason, str) and "the classes are separable" in reason
    noisy = (torch.rand(60, generator=torch.Generator().manual_seed(0)) < torch.sigmoid(x[:, 0])).long()
    collinear = torch.cat([x, x[:, :1] * 2], dim=1)  # a column that another determines
    reason = fit_covariance(mle(collinear, noisy), collinear, noisy)
    assert isinstance(reason, str) and reason.startswith("the Hessian of the loss at the fit is singular")


def test_a_quasi_separated_table_trains_and_says_in_one_line_why_it_has_no_standard_errors(tmp_path, caplog):
    # x1 = 1 is always positive, x1 = -1 never, x1 = 0 either: the likelihood rises forever with x1.
    rng = np.random.default_rng(0)
    x1, x2 = rng.choice([-1.0, 0.0, 1.0], 200), rng.normal(size=200)
    y = np.where(x1 > 0, 1, np.where(x1 < 0, 0, rng.random(200) < 0.5)).astype(int)
    frame = pd.DataFrame({"x1": x1, "x2": x2.round(5), "y": y})
    with caplog.at_level(logging.INFO, logger="src.run"):
        header, rows = fit_table(tmp_path, frame, "y", "optimizer=lbfgs", "trainer.epochs=30")
    assert header == ["feature", "weight"] and list(rows) == ["(intercept)", "x1", "x2"]
    said = [r.getMessage() for r in caplog.records if "no standard errors" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith("coefficients.csv has weights but no standard errors: the likelihood still")
    assert "quasi-complete separation" in said[0]


def test_a_weighted_loss_is_no_likelihood_and_has_no_standard_errors():
    weighted = BinaryCrossEntropy("sum", pos_weight=3.0)
    reason = setup_refusal(compose_config("optimizer=lbfgs"), weighted, spector_data())
    assert reason is not None and reason.startswith("the loss weighs the classes (loss.pos_weight")
    even = BinaryCrossEntropy("sum", class_weight=[1.0, 1.0])  # weights of one: the likelihood itself
    assert setup_refusal(compose_config("optimizer=lbfgs"), even, spector_data()) is None

"""Standard errors of a logistic regression's maximum-likelihood fit, as statistics packages report them.

At the maximum of the likelihood, the inverse of the observed information (the Hessian of the summed
negative log-likelihood, which torch computes) estimates the covariance of the coefficients; each
coefficient's z is its estimate over its standard error, with a two-sided normal p-value and a 95%
interval (statsmodels' `Logit` gives the same). They hold only where the fit is that maximum, so they are
refused, in one line saying why, for a fit that is not: a penalized one (weight decay), one on
mini-batches, one with a weighted loss, one that has not converged, and data whose maximum does not
exist (separable classes) or is not unique (a singular Hessian: collinear features). They are given for
two classes: the coefficients of the log-odds of the positive class (CE's two logits only through their
difference, which is what is identified).
"""

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from src.data import ClassificationData
from src.losses import Head

Z_95 = NormalDist().inv_cdf(0.975)  # the half-width of a 95% interval, in standard errors
# A fit is taken as the maximum when one more Newton step would move no coefficient by more than this
# many of its standard errors, and no training row's fitted log-odds by more than this much; float32
# training stops short of the exact maximum by less than that (tests/test_inference.py).
CONVERGED = 0.01
SINGULAR = 1e-10  # smallest eigenvalue of the Hessian scaled to a unit diagonal: below it, singular


@dataclass(frozen=True)
class Statistics:
    """What coefficients.csv gives beside each estimate, in the same (original) units."""

    std_error: list[float]
    z: list[float]
    p_value: list[float]
    ci_low: list[float]
    ci_high: list[float]


def setup_refusal(cfg: DictConfig, head: Head, data: ClassificationData) -> str | None:
    """Why the run's set-up cannot give a maximum-likelihood fit (None when it can)."""
    if data.num_classes != 2:
        return (
            f"they are given for two classes, and the data has {data.num_classes} (a softmax over more "
            "classes has no identified coefficients without a reference class)"
        )
    if head.class_weights is not None and not bool((head.class_weights == 1).all()):
        return (
            "the loss weighs the classes (loss.pos_weight or loss.class_weight), so it is not the "
            "likelihood; train without class weights for standard errors"
        )
    weight_decay = OmegaConf.select(cfg, "optimizer.weight_decay", default=0.0) or 0.0
    if weight_decay > 0:
        return (
            f"optimizer.weight_decay={weight_decay} penalizes the fit, which is then no maximum of the "
            "likelihood; set optimizer.weight_decay=0"
        )
    batch_size = cfg.trainer.batch_size
    if batch_size is not None and batch_size < len(data.train):
        return (
            f"trainer.batch_size={batch_size} trains on mini-batches of the {len(data.train)} training rows; "
            "use trainer.batch_size=null (and optimizer=lbfgs) for a full-batch fit"
        )
    return None


def fit_covariance(coefficients: Tensor, inputs: Tensor, labels: Tensor) -> Tensor | str:
    """The covariance of (intercept, weights) of the log-odds `coefficients` (1 + features,) fitted to
    `inputs` and 0/1 `labels`, the inverse Hessian of the summed loss there; or why there is none."""
    design = torch.cat([torch.ones(len(inputs), 1, dtype=torch.float64), inputs.double().cpu()], dim=1)
    targets = labels.double().cpu()
    estimate = coefficients.double().cpu()
    log_odds = design @ estimate
    if bool(((log_odds > 0) == (targets > 0.5)).all()):
        return (
            "every training row lies on its own class's side of the fitted boundary: the classes are "
            "separable, so the likelihood has no maximum (the coefficients grow without bound)"
        )

    def negative_log_likelihood(theta: Tensor) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(design @ theta, targets, reduction="sum")

    gradient = torch.func.grad(negative_log_likelihood)(estimate)
    # Reverse mode twice: torch.func.hessian's forward-over-reverse loads forward-mode decompositions
    # through the deprecated torch.jit.script, a FutureWarning on every such run.
    hessian = torch.func.jacrev(torch.func.jacrev(negative_log_likelihood))(estimate)
    scale = hessian.diagonal().clamp_min(torch.finfo(torch.float64).tiny).rsqrt()
    if torch.linalg.eigvalsh(hessian * scale[:, None] * scale[None, :])[0] < SINGULAR:
        return (
            "the Hessian of the loss at the fit is singular: some features are collinear (a one-hot level "
            "beside the intercept, or a column that others determine), or the classes are separated"
        )
    covariance = torch.linalg.inv(hessian)
    step = covariance @ gradient  # the Newton step from the fit to the maximum of the quadratic model
    in_errors = (step.abs() / covariance.diagonal().sqrt()).max().item()
    if in_errors > CONVERGED:
        return (
            f"the fit has not converged (one more Newton step would move a coefficient by {in_errors:.2g} "
            "standard errors); train longer (trainer.epochs), or use optimizer=lbfgs"
        )
    moved = (design @ step).abs().max().item()
    if moved > CONVERGED:
        return (
            f"the likelihood still rises along a direction it barely curves in (one more Newton step "
            f"would move a row's log-odds by {moved:.2g}): the classes are separated, in part "
            "(quasi-complete separation), so it has no maximum"
        )
    return covariance


def statistics(estimates: Tensor, covariance: Tensor) -> Statistics:
    """Standard errors, z, two-sided normal p-values and 95% intervals of `estimates`."""
    std_error = covariance.diagonal().sqrt().tolist()
    values = estimates.tolist()
    z = [value / error for value, error in zip(values, std_error, strict=True)]
    return Statistics(
        std_error=std_error,
        z=z,
        p_value=[math.erfc(abs(score) / math.sqrt(2)) for score in z],  # 2 P(Z > |z|), exact in the tail
        ci_low=[value - Z_95 * error for value, error in zip(values, std_error, strict=True)],
        ci_high=[value + Z_95 * error for value, error in zip(values, std_error, strict=True)],
    )

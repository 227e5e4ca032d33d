"""Re-evaluate a saved run: `python -m src.evaluate ckpt_path=RUN/checkpoints/last.pt [x=4] [x=[4,5]]`.

Rebuilds the run's data and model from the config saved beside the checkpoint (RUN/.hydra/config.yaml),
loads the weights safely, and prints the test metrics (the same numbers training reported, per-class
accuracy included), what it predicted for each true class, and the positive-class probability of each
given input.
"""

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.build import build_components, identity
from src.checkpoint import CheckpointError, RunState, misfit
from src.cli import run_guarded
from src.config import register_configs
from src.errors import UserError
from src.metrics import TEST_ACCURACY_PER_CLASS, TEST_PREDICTIONS_PER_CLASS
from src.report import accuracy_per_class, confusion_counts, predictions, test_metrics, test_predictions

USAGE_LINE = "usage: python -m src.evaluate ckpt_path=RUN/checkpoints/last.pt [x=4] [x=[4,5]]"
USAGE = f"""{USAGE_LINE}

Recomputes a saved run's test metrics (equal to what training reported) and, for the toy set, the
probability of the positive class for each input x. Prints JSON."""


def evaluate_checkpoint(ckpt_path: Path, inputs: list[float] | None = None) -> dict[str, Any]:
    """Test metrics of the checkpoint's model, and predictions for `inputs` (one feature each)."""
    if not ckpt_path.is_file():
        raise CheckpointError(f"{ckpt_path} does not exist; give a run's checkpoints/last.pt")
    config_path = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(
            f"no run config at {config_path}; evaluate a checkpoint inside its run directory"
        )
    cfg = OmegaConf.load(config_path)
    assert isinstance(cfg, DictConfig)
    state = RunState.load(ckpt_path)
    state.check_identity(identity(cfg), ckpt_path)
    parts = build_components(cfg)
    try:
        parts.model.load_state_dict(state.model)
    except (RuntimeError, KeyError, TypeError) as error:
        raise misfit(ckpt_path, error, "evaluate a checkpoint of the run it sits in") from None
    results: dict[str, Any] = {"epochs": state.epoch}
    tested = test_predictions(parts.model, parts.head, parts.data)
    results |= test_metrics(parts.model, parts.head, tested)
    counts = confusion_counts(tested, parts.data.num_classes)
    if counts is not None:  # what it predicted for each true class, as in pictures/confusion_matrix.png
        names = parts.data.class_names
        results[TEST_ACCURACY_PER_CLASS] = accuracy_per_class(counts, names)
        results[TEST_PREDICTIONS_PER_CLASS] = {
            true: {predicted: int(n) for predicted, n in zip(names, row, strict=True) if n}
            for true, row in zip(names, counts.tolist(), strict=True)
        }
    if inputs:
        if parts.data.num_features != 1:
            raise UserError(f"x= takes one number per input; this model reads {parts.data.num_features}")
        x = torch.tensor(inputs, dtype=torch.float32, device=parts.device).view(-1, 1)
        results["predictions"] = predictions(parts.model, parts.head, x)
    return results


def main(argv: list[str]) -> int:
    logging.basicConfig(format="%(message)s", level=logging.INFO)
    if any(arg in ("-h", "--help") for arg in argv):
        print(USAGE)
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)  # started (src/__init__.py)
    register_configs()
    try:
        args = OmegaConf.from_dotlist(argv)
    except Exception as error:  # OmegaConf's grammar: one line
        print(
            f"error: cannot read {' '.join(argv)} ({' '.join(str(error).split())}); {USAGE_LINE}",
            file=sys.stderr,
        )
        return 2
    if "ckpt_path" not in args:
        print(USAGE, file=sys.stderr)
        return 2
    if not str(args.ckpt_path or "").strip():
        print(f"error: ckpt_path is empty; {USAGE_LINE}", file=sys.stderr)
        return 2
    x = args.get("x")
    try:
        inputs = None if x is None else [float(v) for v in (x if OmegaConf.is_list(x) else [x])]
    except (TypeError, ValueError):
        print(f"error: x={x} is not a number; give x=4 or x=[1,4]", file=sys.stderr)
        return 2
    results = run_guarded(lambda: evaluate_checkpoint(Path(args.ckpt_path), inputs))
    print(json.dumps(results, indent=2))
    return 0


def entry_point() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    entry_point()

"""Re-evaluate a saved run: `python -m src.evaluate ckpt_path=RUN/checkpoints/last.pt [x=4] [x=[4,5]]`.

Rebuilds the run's data and model from the config saved beside the checkpoint (RUN/.hydra/config.yaml),
loads the weights safely, and prints the test metrics (the same numbers training reported) and the
positive-class probability of each given input.
"""

import json
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from src.checkpoint import CheckpointError, load_checkpoint
from src.config import register_configs
from src.errors import UserError
from src.experiment import build_experiment, identity
from src.trainer import evaluate, predict_probabilities


def evaluate_checkpoint(ckpt_path: Path, inputs: list[float] | None = None) -> dict[str, Any]:
    """Test metrics of the checkpoint's model, and predictions for `inputs` (one feature each)."""
    config_path = ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(
            f"no run config at {config_path}; evaluate a checkpoint inside its run directory"
        )
    cfg = OmegaConf.load(config_path)
    state = load_checkpoint(ckpt_path)
    if state["identity"] != identity(cfg):
        raise CheckpointError(f"{ckpt_path} does not match the config at {config_path}")
    experiment = build_experiment(cfg)
    experiment.model.load_state_dict(state["model"])
    results: dict[str, Any] = {"epochs": state["epoch"]}
    test = experiment.data.test
    if test is not None and test.labels is not None:
        metrics = evaluate(experiment.model, experiment.loss_fn, test)
        results |= {f"test/{name}": value for name, value in metrics.items()}
    if inputs:
        if experiment.data.num_features != 1:
            raise UserError(f"x= takes one number per input; this model reads {experiment.data.num_features}")
        x = torch.tensor(inputs, dtype=torch.float32, device=experiment.device).view(-1, 1)
        probabilities = predict_probabilities(experiment.model, experiment.loss_fn, x).tolist()
        results["predictions"] = {str(float(v)): p for v, p in zip(inputs, probabilities, strict=True)}
    return results


def main(argv: list[str]) -> int:
    register_configs()
    args = OmegaConf.from_dotlist(argv)
    if "ckpt_path" not in args:
        print("usage: python -m src.evaluate ckpt_path=RUN/checkpoints/last.pt [x=4]", file=sys.stderr)
        return 2
    x = args.get("x")
    inputs = None if x is None else [float(v) for v in (x if OmegaConf.is_list(x) else [x])]
    try:
        results = evaluate_checkpoint(Path(args.ckpt_path), inputs)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Hydra entry point of the Lightning baseline, for sweeps run as lightning-hydra-template runs them:

    python benchmarks/lightning_hydra.py -m lr=0.001,0.01,0.1 hydra.sweep.dir=DIR

Each job trains and tests one model in its own output folder and returns val/loss to the sweeper.
"""

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from lightning_baseline import fit_and_test  # Python puts the script's own folder on sys.path
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="lightning_conf", config_name="train")
def main(cfg: DictConfig) -> float:
    output = Path(HydraConfig.get().runtime.output_dir)
    metrics = fit_and_test(cfg.lr, cfg.seed, output, Path(cfg.root), cfg.epochs)
    (output / "metrics.json").write_text(json.dumps(metrics))
    return metrics["val/loss"]


if __name__ == "__main__":
    main()

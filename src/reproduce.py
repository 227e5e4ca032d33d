"""`python -m src.reproduce RUN_DIR [overrides]`: train a finished run's configuration again, into a
new folder, and say whether it gave the same numbers.

A run's folder keeps the command that made it: .hydra/overrides.yaml (the task's overrides) and
.hydra/hydra.yaml (Hydra's, `hydra.overrides.hydra`). They are replayed through the command's own path
(src.api.run: Hydra composes them, src.train's task trains), less what says where the run continues
from or writes to (`resume`, a `ckpt_path` into its own folder, `hydra.run.dir`, a sweep's folder and
mode). A sweep's job replays as a run of its own: its sweep's search (`hparams_search`) and swept
parameters (`hydra.sweeper.params`) are left out, the values it drew are in its overrides. Then the
config composed now is compared with the one the run saved (.hydra/config.yaml: a conf/ file edited
since shows here), and its metrics.json with the run's.

Hydra's own `--experimental-rerun` is no substitute: on 1.3 it needs a pickled config that only an
extra callback writes, and calls the task without Hydra's run (no folder, no log); 1.4 changed it.
"""

import logging
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.api import Run, load_run, run
from src.errors import UserError
from src.outputs import override_key
from src.run import hydra_overrides

log = logging.getLogger(__name__)
ROUNDING = 1e-5  # relative: a vectorized sweep's job against the same run alone (README, Sweeps)


def replayed_overrides(source: Run) -> list[str]:
    """The overrides that make `source`'s configuration again in a new folder."""
    hydra_file = source.dir / ".hydra" / "hydra.yaml"
    if not hydra_file.is_file():
        raise UserError(f"{source.dir} has no .hydra/hydra.yaml: not a folder of a run that started")
    settings = OmegaConf.load(hydra_file)
    assert isinstance(settings, DictConfig)
    in_sweep = str(OmegaConf.select(settings, "hydra.mode", default="")) == "MULTIRUN"
    kept = []
    for override in source.overrides:
        key, _, value = override.partition("=")
        key = override_key(key)
        own_checkpoint = key == "ckpt_path" and Path(value).resolve().is_relative_to(source.dir)
        if key == "resume" or own_checkpoint or (in_sweep and key == "hparams_search"):
            continue  # where it continued from, or the search that drew the overrides it has
        kept.append(override)
    given = [
        o for o in hydra_overrides(settings) if not (in_sweep and override_key(o).startswith("hydra.sweeper"))
    ]
    return [*kept, *given, *(["hydra.sweeper.params=null"] if in_sweep else [])]


def reproduce(folder: str | Path, *overrides: str) -> Run:
    """Train the configuration of the run in `folder` again (in a new folder, or the `hydra.run.dir=`
    among `overrides`); the new run."""
    return run(*replayed_overrides(load_run(folder)), *overrides)


def differences(before: Run, after: Run) -> tuple[list[str], list[str], float]:
    """What differs between two runs: config keys (`key: a -> b`), metrics beyond float rounding, and
    the largest relative difference of any metric."""
    configs = [_leaves(OmegaConf.to_container(run.config, resolve=False)) for run in (before, after)]
    keys = dict.fromkeys([*configs[0], *configs[1]])
    changed = [
        f"{k}: {configs[0].get(k)} -> {configs[1].get(k)}"
        for k in keys
        if configs[0].get(k) != configs[1].get(k)
    ]
    metrics = [_leaves(run.metrics) for run in (before, after)]
    moved, largest = [], 0.0
    for key in dict.fromkeys([*metrics[0], *metrics[1]]):
        old, new = metrics[0].get(key), metrics[1].get(key)
        if isinstance(old, float) and isinstance(new, float) and math.isfinite(old) and math.isfinite(new):
            relative = abs(new - old) / max(abs(old), abs(new), 1e-12)
            largest = max(largest, relative)
            if relative <= ROUNDING:
                continue
        elif old == new:
            continue
        moved.append(f"{key}: {old} -> {new}")
    return changed, moved, largest


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted.key: value}."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_leaves(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return flat


def main(argv: list[str]) -> int:
    """The command: rerun, compare, say it; 0 when the numbers are the same, 1 when they are not."""
    if not argv or argv[0].startswith("-"):
        print(
            "usage: python -m src.reproduce RUN_DIR [overrides, e.g. hydra.run.dir=NEW_DIR]", file=sys.stderr
        )
        return 2
    try:
        before = load_run(argv[0])
        after = reproduce(before.dir, *argv[1:])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    changed, moved, largest = differences(before, after)
    for change in changed:
        print(f"config differs from {before.dir}'s: {change}")
    if moved:
        print(f"error: the numbers differ from {before.dir}'s: {'; '.join(moved)}", file=sys.stderr)
        return 1
    same = (
        "the same numbers" if largest == 0 else f"the same numbers to float rounding ({largest:.1g} relative)"
    )
    print(f"reproduced {before.dir}: {same}, in {after.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

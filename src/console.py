"""What a person sees in the terminal: the config as a tree, a progress bar, and a closing summary."""

import json
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.metrics import SCALARS, TRAIN_LOSS, VAL_ACCURACY, VAL_LOSS

LOSS_CURVES = (TRAIN_LOSS, VAL_LOSS)  # pinned at the top of TensorBoard's Time Series


def config_tree(cfg: DictConfig, choices: dict[str, str] | None = None) -> str:
    """The resolved config as a tree, one key per line; each group is labelled with its chosen option."""
    choices = choices or {}
    lines = ["config"]

    def walk(node: dict[str, Any], prefix: str, path: str) -> None:
        for index, (key, value) in enumerate(node.items()):
            last = index == len(node) - 1
            branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
            full_key = f"{path}{key}"
            if isinstance(value, dict) and value:
                label = f"{key} ({choices[full_key]})" if full_key in choices else key
                lines.append(f"{prefix}{branch}{label}")
                walk(value, prefix + indent, f"{full_key}/")
            else:
                lines.append(f"{prefix}{branch}{key}: {yaml_scalar(value)}")

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(container, dict)
    walk({str(key): value for key, value in container.items()}, "", "")
    return "\n".join(lines)


def readable_override(override: str) -> str:
    """An override as a person reads it, in a job's line, a table or a legend: booleans `true`/`false`,
    and the long numbers an Optuna trial samples to 4 significant digits (0.005545996722241045 is
    0.005546). summary.csv keeps them whole."""
    key, has_value, value = override.partition("=")
    if value in ("True", "False"):
        value = value.lower()
    elif len(value) > 8 and re.fullmatch(r"[-+]?\d*\.?\d+(e[-+]?\d+)?", value):
        value = f"{float(value):.4g}"
    return f"{key}={value}" if has_value else key


def yaml_scalar(value: Any) -> str:
    """A value as YAML writes it: null, true/false, numbers, [lists]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


class EpochProgress:
    """A progress bar over epochs with the latest loss and accuracy.

    Drawn on stderr only when stderr is a terminal and `enabled`; otherwise it does nothing, so piped
    or logged output stays plain lines.
    """

    SHORT = {TRAIN_LOSS: "loss", VAL_LOSS: "val_loss", VAL_ACCURACY: "val_acc"}

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm  # imported only when a bar is drawn

            self._bar = tqdm(total=total, initial=initial, unit="epoch", leave=False, dynamic_ncols=True)

    def advance(self, metrics: dict[str, float]) -> None:
        """One more epoch done, which measured `metrics`."""
        if self._bar is not None:
            shown = {short: metrics[tag] for tag, short in self.SHORT.items() if tag in metrics}
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update()

    def __enter__(self) -> "EpochProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.close()


def summary(metrics: dict[str, Any], run_dir: Path, seconds: float, tensorboard: bool = True) -> str:
    """The closing lines: what was learned, the final metrics, where the files are, how to look (the
    TensorBoard command, unless `tensorboard` is false: a sweep's job, whose sweep prints one)."""
    lines = [f"{metrics['status']}: {metrics['epochs']} epochs in {seconds:.1f} s"]
    for name, values in metrics.get("parameters", {}).items():
        lines.append(f"{name} = {', '.join(f'{v:.4f}' for v in values)}")
    for x, probability in metrics.get("predictions", {}).items():
        lines.append(f"P(y=1 | x={x}) = {probability:.4f}")
    lines += [f"{key} = {metrics[key]:.4f}" for key in SCALARS if key in metrics]
    lines.append(f"run directory: {run_dir}")
    files = ["metrics.json", "checkpoints/last.pt", "config_tree.txt"]
    files += sorted(str(p.relative_to(run_dir)) for p in (run_dir / "pictures").glob("*.png"))
    lines.append(f"  {', '.join(files)}")
    if tensorboard:
        logdir = next((folder for folder in run_dir.parents if folder.name == "experiments"), run_dir)
        lines.append(tensorboard_command(logdir, [tag for tag in LOSS_CURVES if tag in metrics]))
    return "\n".join(lines)


def tensorboard_command(logdir: Path, curves: list[str]) -> str:
    """The line that tells how to look at `logdir` in TensorBoard (relative to here when inside it),
    with the address that opens Time Series on the loss `curves`: TensorBoard sorts its tag groups by
    name, so it would open on `test`, one point per run; its address can pin cards above the groups."""
    if logdir.is_absolute() and logdir.is_relative_to(Path.cwd()):
        logdir = logdir.relative_to(Path.cwd())
    from urllib.parse import quote

    pinned = json.dumps([{"plugin": "scalars", "tag": tag} for tag in curves], separators=(",", ":"))
    address = f"http://localhost:6006/?pinnedCards={quote(pinned, safe='')}#timeseries"
    return f"TensorBoard: tensorboard --logdir {logdir}\n  then open {address}"


class BelowLevel:
    """A logging filter that passes records below `level` (stdout gets info, stderr the warnings)."""

    def __init__(self, level: str) -> None:
        import logging

        self.level = logging.getLevelName(level)

    def filter(self, record: object) -> bool:
        return getattr(record, "levelno", 0) < self.level

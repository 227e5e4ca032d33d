"""Job configs composed once per pattern of config-group choices, for every sweep (and the tests).

Hydra composes every job's config from scratch, twice: once when the sweeper checks the batch, once when
the launcher loads the job (0.1-0.4 s each here, which is a 32-job sweep's training time). Jobs that
differ only in plain values (`optimizer.lr=0.01` against `seed=3`; not a config-group choice, not a `+`
or `~` override, not a `hydra.` setting) compose the same defaults list, so one composition serves them
all: Hydra composes the pattern's group choices alone, and each job is a copy of that composition with
its own values applied by Hydra's own override code (after composition, where Hydra applies them too)
and with the fields of the `hydra` node that depend on the overrides (`overrides.task`,
`job.override_dirname`) set as Hydra sets them. tests/test_vectorized_fast.py compares jobs against
Hydra's own composition.

`ComposeOncePerPattern` (a callback in conf/config.yaml) installs it on the config loader of every
sweep; the vectorized launcher also keeps each job the sweeper checked for its own load of it.
"""

import copy
import functools
from collections.abc import Callable, Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# Hydra's composition of a job's overrides under a sweep's master config (None outside a sweep).
Compose = Callable[[DictConfig | None, list[str]], DictConfig]


class SweepConfigs:
    """`load_sweep_config` for a config loader: Hydra composes each pattern's group choices once, and
    every job is a copy of that with its own values. With `keep_checked`, a job asked twice (the
    vectorized launcher's load after the sweeper's check) gets the same config the second time."""

    def __init__(self, compose: Compose, is_group: Callable[[str], bool], keep_checked: bool = False) -> None:
        self.compose, self.is_group, self.keep_checked = compose, is_group, keep_checked
        self.parser = OverridesParser.create()
        self.bases: dict[tuple[Any, tuple[str, ...]], DictConfig] = {}
        self.jobs: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def __getstate__(self) -> dict[str, Any]:
        # A parallel launcher pickles the config loader for each job: the patterns go with it (a worker
        # derives its jobs too), the parser is rebuilt, and jobs checked here stay here.
        return {**self.__dict__, "parser": None, "jobs": {}, "keep_checked": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, parser=OverridesParser.create())

    def __call__(self, master_config: DictConfig | None, sweep_overrides: Sequence[str]) -> DictConfig:
        if not self.keep_checked:
            return self.load(master_config, sweep_overrides)
        job = (id(master_config), tuple(sweep_overrides))
        if job in self.jobs:  # the second ask (the launcher's, after the sweeper's check) takes it
            return self.jobs.pop(job)
        self.jobs[job] = self.load(master_config, sweep_overrides)
        return self.jobs[job]

    def load(self, master_config: DictConfig | None, sweep_overrides: Sequence[str]) -> DictConfig:
        overrides = self.parser.parse_overrides(list(sweep_overrides))
        values = [o for o in overrides if is_plain(o) and not self.is_group(o.key_or_group)]
        pattern = pattern_of(overrides, values)
        if pattern is None:  # a + or ~ override: Hydra composes it
            return self.compose(master_config, list(sweep_overrides))
        key = (master_key(master_config), pattern)
        if key not in self.bases:
            self.bases[key] = self.compose(master_config, list(pattern))  # kept as composed
        base = self.bases[key]
        if any(o.key_or_group in base.hydra.runtime.choices for o in values):  # a plain key naming a group
            return self.compose(master_config, list(sweep_overrides))
        return derive(base, master_config, overrides, values)


def install(loader: Any, keep_checked: bool = False) -> None:
    """Make `loader` (the config loader the sweeper and the launcher share) compose as above."""
    if not isinstance(loader, ConfigLoaderImpl):
        return
    if isinstance(loader.load_sweep_config, SweepConfigs):
        loader.load_sweep_config.keep_checked |= keep_checked
        return
    compose = functools.partial(ConfigLoaderImpl.load_sweep_config, loader)  # Hydra's own
    configs = SweepConfigs(compose, loader.repository.group_exists, keep_checked)
    loader.load_sweep_config = configs  # type: ignore[method-assign]


class ComposeOncePerPattern(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks): every sweep's jobs composed as above."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        install(GlobalHydra.instance().config_loader())


def master_key(master_config: DictConfig | None) -> tuple[str, tuple[str, ...]] | None:
    """What a job's composition takes from the sweep's master config: its name and `hydra.` overrides."""
    if master_config is None:
        return None
    return str(master_config.hydra.job.config_name), tuple(master_config.hydra.overrides.hydra)


def is_plain(override: Override) -> bool:
    """A value set on the composed config, if its key is no config group: `key=value` with a scalar,
    outside `hydra`."""
    value = override.value()
    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_hydra_override()
        and "/" not in override.key_or_group
        and not isinstance(value, dict | list)
        and not override.is_sweep_override()
    )


def pattern_of(overrides: Sequence[Override], values: list[Override]) -> tuple[str, ...] | None:
    """What jobs composed alike share: their overrides without the plain `values`; None for a job with
    an override that is neither a plain value nor a group choice (+, ~, a package)."""
    pattern = []
    for override in overrides:
        if any(override is value for value in values):
            continue
        if override.type != OverrideType.CHANGE or override.package is not None:
            return None
        assert override.input_line is not None
        pattern.append(override.input_line)  # a group choice or a hydra setting: composed as given
    return tuple(pattern)


def derive(
    base: DictConfig, master_config: DictConfig | None, overrides: Sequence[Override], values: list[Override]
) -> DictConfig:
    """The config Hydra would compose for `overrides`, from `base`, composed for them without their
    plain `values`: the steps of Hydra's composition that read the overrides."""
    config = copy.deepcopy(base)
    ConfigLoaderImpl._apply_overrides_to_config(values, config)
    task = [override for override in overrides if not override.is_hydra_override()]
    lines = config.hydra.overrides.task
    lines.clear()
    for override in task:
        lines.append(override.input_line)
    settings = config.hydra.job.config.override_dirname
    config.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task,
        kv_sep=settings.kv_sep,
        item_sep=settings.item_sep,
        exclude_keys=settings.exclude_keys,
    )
    if master_config is not None:
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
    return config

"""A sweep's job configs, composed once per pattern of config-group choices (the vectorized launcher's).

Hydra composes every job's config from scratch, twice: once when the sweeper checks the batch, once when
the launcher loads the job (0.1-0.4 s each here, which is a 32-job sweep's training time). Jobs that
differ only in plain values (`optimizer.lr=0.01` against `optimizer.lr=0.1`; not a config-group choice,
not a `+` or `~` override, not a `hydra.` setting) compose the same defaults list, so one composition
serves them all: each other job is a copy of it with its own values applied by Hydra's own override code,
and the fields of the `hydra` node that depend on the overrides (`overrides.task`,
`job.override_dirname`) set as Hydra sets them. The sweeper's check and the launcher's load ask for the
same job and get the same config. tests/test_vectorized_fast.py compares every job against Hydra's own
composition.
"""

import copy
from collections.abc import Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

PLAIN = "<a plain value>"  # in a pattern, where the jobs' own values go


class SweepConfigs:
    """`load_sweep_config` for a config loader: Hydra's composition for the first job of each pattern,
    a copy with the job's values for the others, and the same config again for a job asked twice."""

    def __init__(self, loader: ConfigLoaderImpl) -> None:
        self.compose = loader.load_sweep_config  # Hydra's own
        self.parser = OverridesParser.create()
        self.is_group = loader.repository.group_exists
        self.bases: dict[tuple[int, tuple[str, ...]], DictConfig | None] = {}  # None: compose each job
        self.jobs: dict[tuple[int, tuple[str, ...]], DictConfig] = {}

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        job = (id(master_config), tuple(sweep_overrides))
        if job in self.jobs:  # the second ask (the launcher's, after the sweeper's check) takes it
            return self.jobs.pop(job)
        self.jobs[job] = self.load(master_config, sweep_overrides)
        return self.jobs[job]

    def load(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        overrides = self.parser.parse_overrides(list(sweep_overrides))
        values = [o for o in overrides if is_plain(o) and not self.is_group(o.key_or_group)]
        pattern = pattern_of(overrides, values)
        if pattern is None:  # a + or ~ override: Hydra composes it
            return self.compose(master_config, list(sweep_overrides))
        key = (id(master_config), pattern)
        if key not in self.bases:
            config = self.compose(master_config, list(sweep_overrides))
            choices = config.hydra.runtime.choices  # a plain key that names a group: compose every job
            derivable = not any(o.key_or_group in choices for o in values)
            self.bases[key] = copy.deepcopy(config) if derivable else None  # kept as composed
            return config
        base = self.bases[key]
        if base is None:
            return self.compose(master_config, list(sweep_overrides))
        return derive(base, master_config, overrides, values)


def install(loader: Any) -> None:
    """Make `loader` (the config loader the sweeper and the launcher share) compose as above."""
    if isinstance(loader, ConfigLoaderImpl) and not isinstance(loader.load_sweep_config, SweepConfigs):
        loader.load_sweep_config = SweepConfigs(loader)  # type: ignore[method-assign]


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
    """What jobs composed alike share: their overrides, with the plain `values` left out; None for a job
    with an override that is neither a plain value nor a group choice (+, ~, a package)."""
    pattern = []
    for override in overrides:
        if any(override is value for value in values):
            pattern.append(f"{override.key_or_group}={PLAIN}")
        elif override.type == OverrideType.CHANGE and override.package is None:
            assert override.input_line is not None
            pattern.append(override.input_line)  # a group choice or a hydra setting: composed as given
        else:
            return None
    return tuple(pattern)


def derive(
    base: DictConfig, master_config: DictConfig, overrides: Sequence[Override], values: list[Override]
) -> DictConfig:
    """The config Hydra would compose for `overrides` (whose plain `values` are the only difference from
    the job `base` was composed for): load_sweep_config's steps that read the overrides."""
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
    OmegaConf.copy_cache(from_config=master_config, to_config=config)
    return config

"""A job's side of an Optuna search: report the objective each epoch, and stop when the trial is pruned.

The sweeper (hydra_plugins/logreg_lab/optuna_sweeper.py) runs each trial as a Hydra job and names the
trial in the job's environment (`hydra.job.env_set`, which every launcher applies):

    LOGREG_LAB_TRIAL=<journal file or storage URL>::<study name>::<trial number>

Each run asks `epoch_reporter(spec)` once (None outside a search) and, after each epoch,
`reporter.should_prune(epoch, value)`. A pruned run writes metrics.json with status "pruned" and returns
a `PrunedRun`, which the sweeper records as a pruned trial: not a failure. Optuna is only imported
inside a trial, so an ordinary run does not pay for it.
"""

from typing import Any

TRIAL_ENV = "LOGREG_LAB_TRIAL"
PRUNED = "pruned"  # the status in metrics.json and in the sweep summary


class PrunedRun:
    """What a pruned job returns: the sweeper tells Optuna the trial was pruned.

    It refuses float() (like src.sweep.FailedRun), so that a sweeper which does not know it records a
    failure rather than a partial result as a finished one.
    """

    def __init__(self, epoch: int, value: float) -> None:
        self.epoch = epoch
        self.value = value

    def __float__(self) -> float:
        raise ValueError(f"pruned after epoch {self.epoch}")

    def __repr__(self) -> str:
        return f"pruned run: after epoch {self.epoch} at {self.value:.6g}"


class EpochReporter:
    """Reports one job's objective to its Optuna trial, epoch by epoch."""

    def __init__(self, trial: Any, reported: set[int]) -> None:
        self.trial = trial
        self.reported = reported  # epochs already in the study: a resumed job repeats a few

    def should_prune(self, epoch: int, value: float) -> bool:
        """Report `value` at step `epoch`; True when the study's pruner stops this trial here."""
        if epoch not in self.reported:
            self.trial.report(float(value), step=epoch)
            self.reported.add(epoch)
        return bool(self.trial.should_prune())


def epoch_reporter(spec: str | None) -> "EpochReporter | None":
    """The reporter of the Optuna trial that `spec` (the job's TRIAL_ENV) names, or None outside a search.

    A job's environment is its `hydra.job.env_set`: the launchers that run it as a Hydra job apply it,
    and a stack's members, which train side by side in one process, each pass their own."""
    if not spec:
        return None
    storage_spec, study_name, number = spec.rsplit("::", 2)

    import optuna
    from hydra.utils import instantiate

    storage = open_storage(storage_spec)
    study_id = storage.get_study_id_from_name(study_name)
    pruner_config = storage.get_study_user_attrs(study_id).get("pruner")
    pruner = instantiate(pruner_config) if pruner_config else optuna.pruners.NopPruner()
    # The sampler is not used here (the sweeper has drawn the parameters); a random one costs nothing.
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler(), pruner=pruner
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
    reported = set(storage.get_trial(trial_id).intermediate_values)
    return EpochReporter(optuna.trial.Trial(study, trial_id), reported)


def open_storage(spec: str) -> Any:
    """Optuna storage from a journal file path, or from a database URL (anything with `://`)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    return optuna.storages.JournalStorage(JournalFileBackend(spec))

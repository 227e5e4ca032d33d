"""Hydra's submitit SLURM launcher, for clusters without job accounting and for jobs that SLURM ends.

Two changes to `hydra_submitit_launcher`'s SlurmLauncher (selected by conf/hydra/launcher/slurm.yaml
through `_target_`; Hydra only loads launchers from the `hydra_plugins` namespace package). The second
serves submitit's local executor too (LocalLauncher, conf/hydra/launcher/slurm_local.yaml), so a sweep
tried on this machine ends its jobs as the cluster would, and Hydra's launcher conformance suite can run
this launcher's code without a cluster (tests/test_launcher_conformance.py):

- **Job states without `sacct`.** submitit follows its jobs with `sacct`. Where accounting is off (small
  clusters, a test cluster) every poll printed a warning, and a job that SLURM ended without a result
  (cancelled, killed at its time limit) was never seen to end: the sweep waited forever. Here the first
  failing `sacct` is said once, in plain words, and the jobs are followed with `squeue` from then on.
- **A job that SLURM ends is a failed job, not a crashed sweep.** submitit raises for a job without a
  result; the stock launcher let that end the whole sweep before its summary. Here such a job returns a
  `src.sweep.FailedRun`, like a job that failed in Python, so the other jobs' results are kept and the
  sweep summary lists it as failed (and exits 1).
"""

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as stock
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

log = logging.getLogger(__name__)

GONE = "ENDED"  # state of a job that squeue no longer lists: it ended (SLURM forgets jobs after MinJobAge)


class QueueWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher, falling back to `squeue` once `sacct` fails."""

    def __init__(self, delay_s: int = 600) -> None:
        super().__init__(delay_s=delay_s)
        self.use_squeue = False

    def update(self) -> None:
        command = self._make_command()  # sacct for the jobs not finished yet; None when there are none
        if command is None:
            return
        self._num_calls += 1
        if not self.use_squeue:
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=120)
                said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            except (OSError, subprocess.TimeoutExpired) as error:  # not installed, or hanging
                done, said = None, str(error)
            if done is not None and done.returncode == 0:
                self._info_dict.update(self.read_info(done.stdout))
            else:
                log.warning(f"sacct does not answer on this cluster ({said}): following the jobs with squeue")
                self.use_squeue = True
        if self.use_squeue:
            self._info_dict.update(self._squeue_states())
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def _squeue_states(self) -> dict[str, dict[str, str]]:
        """{job id: {"State": ...}} from squeue; jobs it no longer knows have ended."""
        waiting = self._registered - self._finished
        main_ids = sorted({job_id.split("_")[0] for job_id in waiting})
        command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N"]
        try:
            done = subprocess.run(
                [*command, f"--jobs={','.join(main_ids)}"], capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            log.warning(f"squeue failed ({error}); asking again later")
            return {}
        if done.returncode != 0 and "Invalid job id" not in done.stderr:
            log.warning(f"squeue failed ({done.stderr.strip()}); asking again later")
            return {}
        states = {}
        for line in done.stdout.splitlines():  # with one unknown id, squeue lists nothing and fails
            job_id, state, nodes = (line.split("|") + ["", ""])[:3]
            states[job_id.strip()] = {"JobID": job_id.strip(), "State": state.strip(), "NodeList": nodes}
        for job_id in waiting - states.keys():
            states[job_id] = {"JobID": job_id, "State": GONE, "NodeList": ""}
        return states


def submit_or_explain(submit: Any) -> Any:
    """`submit()`, or one line saying why SLURM took no jobs and what runs the sweep here instead.

    sbatch's own messages are held back while it runs (they are many lines when no cluster answers)."""
    saved_stderr = os.dup(2)
    failure: Exception
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            return submit()
        except (FileNotFoundError, FailedJobError) as error:
            failure = error
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
    if isinstance(failure, FileNotFoundError):  # no sbatch on this machine
        reason = f"{Path(str(failure.filename or 'sbatch')).name} not found: SLURM is not installed here"
    else:  # sbatch is there, but no cluster answers
        lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
        reason = f"sbatch could not submit the jobs ({lines[-1] if lines else 'no reason given'})"
    explain(reason)


def explain(reason: str) -> NoReturn:
    """Why SLURM cannot run this sweep, and what runs it on this machine instead; one line, exit 2."""
    print(
        f"error: {reason}; run the sweep on a SLURM login node, or try it on this machine with "
        "hydra/launcher=slurm_local",
        file=sys.stderr,
    )
    sys.exit(2)


class KeepsEndedJobs(stock.BaseSubmititLauncher):
    """A submitit launcher whose jobs that end without a result are failed rows (see the module doc).

    `launch` is the stock one (hydra-submitit-launcher 1.2) up to its last line, which waited with
    `job.results()` and let the first job without a result end the sweep.
    """

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        init_keys = {"submitit_folder", "max_num_timeout"}
        try:
            executor = submitit.AutoExecutor(
                cluster=self._EXECUTOR,
                folder=self.params["submitit_folder"],
                **{
                    f"{self._EXECUTOR}_max_num_timeout": self.params[k]
                    for k in ["max_num_timeout"]
                    if k in self.params
                },
            )
        except RuntimeError as error:  # submitit looks for srun first
            if "srun" not in str(error):
                raise
            explain("srun and sbatch not found: SLURM is not installed here")
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in shared else f"{self._EXECUTOR}_{k}": v
                for k, v in self.params.items()
                if k not in init_keys
            }
        )
        log.debug(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.debug(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append(
                (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
            )
        jobs = submit_or_explain(lambda: executor.map_array(self, *zip(*job_params, strict=True)))
        self.follow(jobs)
        return [self._result(job, idx) for idx, job in enumerate(jobs, start=initial_job_idx)]

    def follow(self, jobs: list[Any]) -> None:
        """Set up how the jobs' states are followed (submitit's own way, unless a cluster needs another)."""

    def ended_state(self, job: Any) -> str:
        return str(job.state)

    def _result(self, job: Any, job_num: int) -> JobReturn:
        """The job's JobReturn; a FailedRun when it ended without one (cancelled, time limit, killed)."""
        try:
            return job.results()[0]
        except Exception as error:
            from src.sweep import FailedRun

            where = "SLURM job" if self._EXECUTOR == "slurm" else "job"
            state = self.ended_state(job)
            reason = f"{where} {job.job_id} ended {state} without a result ({type(error).__name__})"
            log.error(f"job #{job_num}: {reason}; its log: {job.paths.stderr}")
            return JobReturn(status=JobStatus.COMPLETED, _return_value=FailedRun(reason))


class SlurmLauncher(KeepsEndedJobs, stock.SlurmLauncher):
    """On a SLURM cluster: job states from the QueueWatcher where sacct is off."""

    def follow(self, jobs: list[Any]) -> None:
        watcher = QueueWatcher()
        for job in jobs:  # an instance attribute: submitit's own watcher stays as it is for other code
            job.watcher = watcher
            watcher.register_job(job.job_id)

    def ended_state(self, job: Any) -> str:
        return str(job.watcher.get_state(job.job_id, mode="force"))


class LocalLauncher(KeepsEndedJobs, stock.LocalLauncher):
    """On this machine, through submitit's local executor: the same jobs, the same ends."""

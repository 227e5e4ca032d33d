"""`hydra/launcher=slurm` on a real one-node SLURM cluster (tests/cluster/slurm_cluster.sh).

Run with `make test-cluster` (root: it installs and starts the cluster, and stops it afterwards). Without
root or without SLURM installed these tests are skipped; the default `make test` leaves them out.
"""

import csv
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Started, launch, read_scalars

pytestmark = pytest.mark.cluster

SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
# Small jobs: one CPU and 1 GB each, so that two run side by side on a 2-core laptop.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
SWEEP_TIMEOUT = 240  # seconds; a sweep of the toy set takes well under a minute on an idle machine


def cluster_script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def slurm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SLURM_CONF of a running cluster: the one `make test-cluster` started (SLURM_CLUSTER_DIR), or
    one started here in a temporary folder and stopped after this module's tests."""
    if os.geteuid() != 0 or not all(shutil.which(cmd) for cmd in ("slurmctld", "slurmd", "munged", "sbatch")):
        pytest.skip("needs root and SLURM: run `make test-cluster` (tests/cluster/slurm_cluster.sh install)")
    env = dict(os.environ)
    started_here = "SLURM_CLUSTER_DIR" not in env or cluster_script("status", env=env).returncode != 0
    if started_here:
        env["SLURM_CLUSTER_DIR"] = str(tmp_path_factory.mktemp("slurm"))
    previous = os.environ.get("SLURM_CONF")
    try:
        if started_here:
            started = cluster_script("start", env=env)
            assert started.returncode == 0, started.stdout + started.stderr
        conf = str(Path(env["SLURM_CLUSTER_DIR"]) / "etc" / "slurm.conf")
        os.environ["SLURM_CONF"] = conf  # for the sweeps' sbatch and squeue, and scancel below
        yield conf
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        if started_here:
            stopped = cluster_script("stop", env=env)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def summary_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as file:
        return sorted(csv.DictReader(file), key=lambda row: int(row["job"]))


def start_sweep(sweep_dir: Path, *overrides: str) -> Started:
    """The sweep command in the background, its output in sweep_dir's parent."""
    log = sweep_dir.parent / f"{sweep_dir.name}.log"
    return launch("-m", *SLURM, *overrides, f"hydra.sweep.dir={sweep_dir}", output=log)


def finish(process: Started, sweep_dir: Path) -> str:
    """Wait for a sweep started by start_sweep; returns its output."""
    try:
        process.wait(timeout=SWEEP_TIMEOUT)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            for job_id in submitted(sweep_dir):  # its jobs must not outlive the test
                subprocess.run(["scancel", job_id], timeout=30)
    return (sweep_dir.parent / f"{sweep_dir.name}.log").read_text()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def submitted(sweep_dir: Path) -> list[str]:
    """SLURM ids of the jobs (or job array) that submitit submitted: its folders named by them."""
    return sorted(p.name for p in (sweep_dir / ".submitit").glob("*") if re.fullmatch(r"\d+", p.name))


def array_task(sweep_dir: Path, job_num: int) -> str | None:
    """SLURM's id of a sweep's job (`123_1`) once submitit has submitted the array."""
    ids = submitted(sweep_dir)
    return f"{ids[0]}_{job_num}" if ids else None


def job_state(job_id: str) -> str:
    listed = subprocess.run(
        [
            "squeue",
            "--noheader",
            "--array",
            "--states=all",
            "--format=%i %T",
            f"--jobs={job_id.split('_')[0]}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return dict(line.split() for line in listed.stdout.splitlines()).get(job_id, "")


def job_log(sweep_dir: Path, job_id: str) -> str:
    """What the job printed, all attempts together (submitit appends to <array id>/<id>_0_log.*)."""
    folder = sweep_dir / ".submitit" / job_id
    return "".join(path.read_text() for path in sorted(folder.glob("*_log.*")))


def test_a_two_job_sweep_runs_on_the_cluster_and_is_summarized(slurm_conf, tmp_path):
    sweep_dir = tmp_path / "sweep"
    process = start_sweep(sweep_dir, "optimizer.lr=0.01,0.1", "trainer.epochs=50")
    output = finish(process, sweep_dir)
    assert process.returncode == 0, output
    rows = summary_rows(sweep_dir)
    assert [(row["overrides"], row["status"], row["epochs"]) for row in rows] == [
        ("optimizer.lr=0.01 trainer.epochs=50", "completed", "50"),
        ("optimizer.lr=0.1 trainer.epochs=50", "completed", "50"),
    ]
    (array,) = submitted(sweep_dir)
    for job in (0, 1):  # run by SLURM as tasks of one job array
        task = f"{array}_{job}"
        wait_until(lambda task=task: job_state(task) == "COMPLETED", f"{task} to leave COMPLETING", 60)
        assert "Starting with JobEnvironment" in job_log(sweep_dir, f"{array}_{job}")
    # accounting is off on this cluster: submitit's sacct warning is said once, in plain words
    assert "Bypassing sacct error" not in output
    assert output.count("sacct does not answer on this cluster") == 1, output


def test_a_preempted_job_requeues_resumes_and_ends_with_the_uninterrupted_curve(slurm_conf, tmp_path):
    overrides = ["trainer.epochs=3000", "trainer.checkpoint_every=25", "optimizer.lr=0.05"]
    sweep_dir = tmp_path / "sweep"
    process = start_sweep(sweep_dir, *overrides)
    # the same run without interruption, meanwhile, on this machine
    local = launch(*overrides, f"hydra.run.dir={tmp_path / 'local'}")
    try:
        # a single job is a plain SLURM job (no array): its id names its .submitit folder
        job_id = wait_until(lambda: next(iter(submitted(sweep_dir)), None), "the job's submission")
        wait_until(lambda: (sweep_dir / "0" / "checkpoints" / "last.pt").is_file(), "the first checkpoint")
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    finally:
        output = finish(process, sweep_dir)
        local_stderr = local.communicate(timeout=SWEEP_TIMEOUT)[1]
    assert local.returncode == 0, local_stderr
    assert process.returncode == 0, output
    log = job_log(sweep_dir, job_id)
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log  # submitit requeued it...
    # ...and the requeued job went on from its checkpoint
    resumed = re.search(r"resuming from (\S+) after epoch (\d+)", log)
    assert resumed, log
    assert resumed.group(1) == str(sweep_dir / "0" / "checkpoints" / "last.pt")
    assert 0 < int(resumed.group(2)) < 3000
    assert log.count("Starting with JobEnvironment") == 2
    (row,) = summary_rows(sweep_dir)
    assert (row["status"], row["epochs"]) == ("completed", "3000")
    curve = read_scalars(sweep_dir / "0")["train/loss"]
    expected = read_scalars(tmp_path / "local")["train/loss"]
    assert len(curve) == 3000
    assert curve == expected  # exactly: same steps, same values


def test_jobs_cancelled_or_stopped_at_their_time_limit_are_failed_rows(slurm_conf, tmp_path):
    # job 0 completes; job 1 gets SLURM's time-limit notice (USR2 30 s before its 2-minute limit, which
    # SLURM may send up to 60 s early: never in the first 30 s) and is not requeued (max_num_timeout=0);
    # job 2 is cancelled while it trains (it starts once job 0 has freed its CPU)
    sweep_dir = tmp_path / "sweep"
    limit = ["hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30"]
    process = start_sweep(sweep_dir, *limit, "trainer.epochs=20,1000000,1000001")
    try:
        job_2 = wait_until(lambda: array_task(sweep_dir, 2), "the array's submission")
        wait_until(
            lambda: (sweep_dir / "2" / "checkpoints" / "last.pt").is_file(), "job 2's first checkpoint"
        )
        subprocess.run(["scancel", job_2], check=True, timeout=30)
    finally:
        output = finish(process, sweep_dir)
    assert process.returncode == 1, output
    assert "error: 2 of 3 jobs failed" in output
    rows = summary_rows(sweep_dir)
    assert [row["status"] == "completed" for row in rows] == [True, False, False], rows
    assert [int(row["epochs"]) < 1000000 for row in rows[1:]] == [True, True]  # stopped early, not finished
    job_1 = job_2.replace("_2", "_1")
    assert "this job is timed-out" in job_log(sweep_dir, job_1)
    assert "Job not requeued because: timed-out too many times" in job_log(sweep_dir, job_1)
    wait_until(lambda: job_state(job_2) == "CANCELLED", f"{job_2} listed as CANCELLED", 60)
    assert f"SLURM job {job_2} ended CANCELLED" in output  # the launcher says what became of it

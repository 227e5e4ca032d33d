"""The real command as a user types it: output, exit codes, the log (in this process), and concurrency
(two processes)."""

import pytest

from tests.helpers import command, launch, read_metrics, tutorial_run


def test_the_default_run_prints_the_tree_what_it_learned_and_where_it_is(tmp_path):
    run_dir = tmp_path / "run"
    process = command(f"hydra.run.dir={run_dir}")
    assert process.returncode == 0, process.stderr
    _, w, b = tutorial_run(seed=2)
    assert f"w = {w:.4f}" in process.stdout and f"b = {b:.4f}" in process.stdout
    assert "P(y=1 | x=4.0) = 0.88" in process.stdout and str(run_dir) in process.stdout
    assert (
        "completed: 1000 epochs" in process.stdout and "TensorBoard: tensorboard --logdir" in process.stdout
    )
    tree = (run_dir / "config_tree.txt").read_text()
    assert tree in process.stdout + "\n"  # printed as saved
    assert "\r" not in process.stdout + process.stderr and process.stderr == ""  # piped: no progress bar
    log = (run_dir / "train.log").read_text()
    assert "completed: 1000 epochs" in log and "P(y=1 | x=4.0)" in log  # the log keeps what was printed
    assert (run_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize(
    "overrides,message",
    [
        # Hydra's own errors (src/hydra_errors.py; every case in tests/test_hydra_errors.py)
        (
            ["dataset=imagenet"],
            "error: dataset=imagenet is not an option; did you mean dataset=image_folder? (options: csv, ",
        ),
        (["-m", "optimizer.lr=0.1,abc"], "error: optimizer.lr takes a number, not 'abc'"),
        (["trainer.epochs=0"], "error: trainer.epochs must be at least 1, got 0"),
        (["dataset=mnist_binary", "dataset.root=/nonexistent"], "error: mnist data not found"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_traceback(tmp_path, overrides, message):
    folders = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    process = command(*overrides, *folders)
    assert process.returncode == 2
    (line,) = [line for line in process.stderr.strip().splitlines() if not line.startswith("sweep: ")]
    assert line.startswith(message), process.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()  # refused: nothing is left


def test_a_bug_is_one_line_on_screen_and_a_traceback_in_the_log(tmp_path):
    # A target that cannot take the dataset's arguments stands in for a programming error.
    run_dir = tmp_path / "run"
    process = command("dataset._target_=src.data.Split", f"hydra.run.dir={run_dir}")
    assert process.returncode == 1
    (line,) = process.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"the traceback is in {run_dir / 'train.log'}" in line
    log = (run_dir / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "unexpected keyword argument" in log
    assert read_metrics(run_dir)["status"] == "failed"


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_runs_started_together_get_their_own_directories(tmp_path):
    processes = [launch("trainer.epochs=1", cwd=tmp_path) for _ in range(2)]
    for process in processes:
        process.communicate(timeout=120)
    assert [process.returncode for process in processes] == [0, 0]
    run_dirs = sorted((tmp_path / "experiments" / "runs").glob("*/*"))
    assert len(run_dirs) == 2
    assert all((run_dir / "metrics.json").is_file() for run_dir in run_dirs)


@pytest.mark.parametrize(
    "optimizer",
    ["sgd", pytest.param("adam", marks=pytest.mark.slow), pytest.param("adamw", marks=pytest.mark.slow)],
)
def test_a_plain_run_never_imports_torchs_compiler(tmp_path, optimizer):
    """In a fresh process, as a user starts it: SGD, Adam and AdamW without a schedule step with the
    project's own update, so torch._dynamo (1.2 s of torch.optim's construction) is never imported."""
    import subprocess
    import sys

    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "src.train", f"optimizer={optimizer}", "trainer.epochs=20",
         f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in process.stderr.splitlines() if "import time:" in line}
    assert "torch" in imported and "src.stack" in imported  # the listing is the run's
    assert not {name for name in imported if name.startswith(("torch._dynamo", "torch._inductor"))}
    assert read_metrics(tmp_path / "run")["status"] == "completed"


USERS_MODEL = '''
from torch import nn


class Tiny(nn.Module):
    """A user's own model: logistic regression with its bias fixed at zero."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)

    def forward(self, inputs):
        return self.linear(inputs)
'''


def test_a_users_own_model_trains_once_its_package_is_trusted(tmp_path):
    import hydra
    import torch

    from src.config import major_minor

    (tmp_path / "mylab").mkdir()
    (tmp_path / "mylab" / "__init__.py").write_text("")
    (tmp_path / "mylab" / "models.py").write_text(USERS_MODEL)
    own = ["model._target_=mylab.models.Tiny", "trainer.epochs=3"]
    env = {"PYTHONPATH": str(tmp_path)}
    untrusted = command(*own, f"hydra.run.dir={tmp_path / 'untrusted'}", env=env)
    if major_minor(hydra.__version__) >= (1, 4):  # instantiates only trusted code
        assert untrusted.returncode == 2
        (line,) = untrusted.stderr.strip().splitlines()
        assert line.startswith("error: model._target_=mylab.models.Tiny") and "trusted_targets=" in line
    else:  # Hydra 1.3 trusts every target
        assert untrusted.returncode == 0, untrusted.stderr
    trusted = command(*own, "trusted_targets=[mylab.*]", f"hydra.run.dir={tmp_path / 'trusted'}", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert read_metrics(tmp_path / "trusted")["status"] == "completed"
    state = torch.load(tmp_path / "trusted" / "checkpoints" / "last.pt", weights_only=True)
    assert [key for key in state["model"]] == ["linear.weight"]  # the user's model, without a bias


def test_help_names_every_group_and_every_option_that_conf_holds():
    # The template Hydra prints for `--help` (read here: a process would only add its start-up time)
    import yaml

    from tests.helpers import CONF

    template = yaml.safe_load((CONF / "hydra" / "help" / "logreg_lab.yaml").read_text())["template"]
    skipped = ("hydra", "recipe")  # Hydra's own settings; a recipe comes with its dataset
    groups = [path for path in sorted(CONF.iterdir()) if path.is_dir() and path.name not in skipped]
    listed = template.split("Groups (group=option):", 1)[1].split("\n\n", 1)[0]
    rows: dict[str, str] = {}  # group: its options, over the row's continuation lines too
    current = ""
    for line in listed.splitlines()[1:]:
        current = line[2:18].strip() or current
        rows[current] = rows.get(current, "") + " " + line[18:]
    assert sorted(rows) == sorted(group.name for group in groups)
    for group in groups:
        for option in sorted(group.glob("*.yaml")):
            assert option.stem in rows[group.name].replace(",", " ").split(), (group.name, option.stem)


def test_the_mnist_cut_script_has_a_help_and_names_a_missing_source(tmp_path):
    from tests.helpers import REPO

    # from another folder, as a clone elsewhere runs it (the checkout on the path, as `-m` in it has)
    helped = command("--help", module="benchmarks.mnist_cut", cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert helped.returncode == 0 and "--source" in helped.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named --help
    missing = command(
        str(tmp_path / "cut"), "--source", str(tmp_path / "nowhere"), module="benchmarks.mnist_cut"
    )
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    (line,) = missing.stderr.strip().splitlines()
    assert line.startswith("error: t10k-images-idx3-ubyte.gz") and "--source" in line


def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path):
    import signal
    import time

    started = launch(f"hydra.run.dir={tmp_path / 'run'}")
    time.sleep(0.8)  # importing torch (or composing, at the latest)
    started.send_signal(signal.SIGINT)
    _, stderr = started.communicate(timeout=60)
    assert started.returncode == 130 and "Traceback" not in stderr, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: stopped by Ctrl-C")


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_evaluate_refuses_bad_arguments_in_one_line(tmp_path):
    cases = [(["ckpt_path="], "error: ckpt_path is empty"),
             ([f"ckpt_path={tmp_path}/last.pt", "x=abc"], "error: x=abc is not a number")]  # fmt: skip
    for args, said in cases:
        process = command(*args, module="src.evaluate")
        assert process.returncode == 2 and process.stderr.strip().splitlines() == [process.stderr.strip()]
        assert process.stderr.startswith(said)


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    for folder in (tmp_path / "a-file", tmp_path / "a-file" / "run"):
        process = command(f"hydra.run.dir={folder}")
        assert process.returncode == 2 and process.stderr.strip().splitlines() == [process.stderr.strip()]
        assert process.stderr.startswith(f"error: cannot make the folder {folder}")

"""Your own table (dataset=csv, src/tables.py): reading, classes, features, splits, and every bad table as
one line naming the file, the line and the column."""

import pytest
import torch

from src.errors import DataError
from src.tables import load_csv
from tests.helpers import command, read_metrics, train_here

SETTINGS = dict(features=None, positive=None, categorical=[], standardize=True, val_fraction=0.0,
                test_fraction=0.0)  # fmt: skip


def table(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def people(count=40):
    """A header and `count` rows: age, income, a city, and whether they bought (by age and city)."""
    lines = ["age,income,city,bought"]
    for i in range(count):
        age, city = 20 + (i * 7) % 45, ("paris", "lyon", "nice")[i % 3]
        lines.append(
            f"{age},{30000 + 1000 * (i % 11)},{city},{'yes' if age > 40 or city == 'nice' else 'no'}"
        )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_a_table_reads_with_any_usual_delimiter_and_quoted_fields(tmp_path, delimiter):
    rows = [["x", "note", "y"], ["1.5", '"a, quoted; field"', "0"], ["2.5", "plain", "1"], ["-3", '""', "1"]]
    path = table(tmp_path, "\n".join(delimiter.join(row) for row in rows) + "\n")
    data = load_csv(path, "y", **{**SETTINGS, "features": ["x"], "standardize": False})
    assert sorted(data.train.inputs.flatten().tolist()) == [-3.0, 1.5, 2.5]  # rows in a seeded order
    assert data.class_names == ("0", "1") and data.feature_names == ("x",)


def test_features_default_to_every_other_column_and_categories_are_one_hot(tmp_path):
    data = load_csv(table(tmp_path, people()), "bought", **{**SETTINGS, "categorical": ["city"]})
    assert data.feature_names == ("age", "income", "city=lyon", "city=nice", "city=paris")
    assert data.class_names == ("no", "yes")  # the target's values, sorted
    one_hot = data.train.inputs[:, 2:]
    assert torch.equal(one_hot.sum(dim=1), torch.ones(len(data.train)))  # one level per row, not scaled


def test_positive_names_the_positive_class(tmp_path):
    data = load_csv(
        table(tmp_path, people()), "city", **{**SETTINGS, "features": ["age"], "positive": "nice"}
    )
    assert data.class_names == ("not nice", "nice")
    assert data.train.labels.sum().item() == sum(1 for i in range(40) if i % 3 == 2)


def test_splits_follow_the_seed_and_standardization_uses_the_training_rows_only(tmp_path):
    path = table(tmp_path, people(100))
    settings = {**SETTINGS, "categorical": ["city"], "val_fraction": 0.2, "test_fraction": 0.1}
    data = load_csv(path, "bought", **settings, seed=3)
    assert (len(data.train), len(data.val), len(data.test)) == (70, 20, 10)
    numeric = data.train.inputs[:, :2].double()
    assert torch.allclose(numeric.mean(dim=0), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(numeric.std(dim=0, correction=0), torch.ones(2, dtype=torch.float64), atol=1e-6)
    assert not torch.allclose(
        data.val.inputs[:, :2].double().mean(dim=0), torch.zeros(2, dtype=torch.float64), atol=1e-3
    )
    again = load_csv(path, "bought", **settings, seed=3)
    assert torch.equal(again.test.inputs, data.test.inputs)
    other = load_csv(path, "bought", **settings, seed=4)
    assert not torch.equal(other.test.inputs, data.test.inputs)
    none_held_out = {**settings, "val_fraction": 0.0, "test_fraction": 0.0}
    assert load_csv(path, "bought", **none_held_out).val is None  # a fraction of 0: no such split


@pytest.mark.parametrize(
    "text,settings,message",
    [
        ("a,b\n1,0\n", {"target": "y"}, r"data.csv has no column 'y' \(dataset.target\); its columns: a, b"),
        (
            "a,y\n1,0\nabc,1\n",
            {},
            r"data.csv, line 3, column 'a': 'abc' is not a number; .*categorical=\[a\]",
        ),
        ("a,y\n1,0\n,1\n", {}, r"data.csv, line 3, column 'a': empty cell; fill it or drop the row"),
        ("a,y\n1,0\n2,\n", {}, r"data.csv, line 3, column 'y': empty cell; every row needs a class"),
        ("a,y\n1,0\n2,0\n", {}, r"data.csv: column 'y' holds one class only \('0'\); a classifier needs two"),
        (
            "a,b,y\n1,5,0\n2,5,1\n",
            {},
            r"data.csv: column 'b' is constant in the training rows.*standardize=false",
        ),
        ("", {}, r"data.csv is empty: it needs a header row and at least one row of data"),
        ("a,y\n", {}, r"data.csv is empty"),
        ("a,y\n1,0,7\n", {}, r"data.csv, line 2: 3 fields, but the header has 2; quote fields"),
        (
            "a,y\n1,0\n2,1\n",
            {"positive": "2"},
            r"column 'y' never holds '2' \(dataset.positive\); its values: 0, 1",
        ),
        ("a,y\n1,0\n2,1\n", {"features": ["z"]}, r"data.csv has no feature column 'z'"),
    ],
)
def test_every_bad_table_is_one_line_naming_the_file_line_and_column(tmp_path, text, settings, message):
    path = table(tmp_path, text)
    with pytest.raises(DataError, match=message) as refused:
        load_csv(path, settings.pop("target", "y"), **{**SETTINGS, **settings})
    assert "\n" not in str(refused.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.csv cannot be read as a table"):
        load_csv(str(tmp_path / "nowhere.csv"), "y", **SETTINGS)


def test_a_table_trains_from_the_command_line_with_its_recipe(tmp_path):
    path = table(tmp_path, people(200))
    run_dir = tmp_path / "run"
    own = ["dataset=csv", f"dataset.path={path}", "dataset.target=bought", "dataset.categorical=[city]"]
    process = command(*own, f"hydra.run.dir={run_dir}")
    assert process.returncode == 0, process.stderr
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 200  # conf/recipe/csv.yaml
    assert metrics["test/accuracy"] > 0.8  # age and city decide, and the model sees both
    missing = command("dataset=csv", f"hydra.run.dir={tmp_path / 'refused'}")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: dataset.path, dataset.target must be given: add dataset.path=... dataset.target=... to the "
        "command line"
    )


def test_a_converged_logistic_fit_writes_the_maximum_likelihood_coefficients_in_the_features_units(tmp_path):
    # An unregularized full-batch LBFGS fit on a table reaches the maximum-likelihood estimate, the same
    # as scikit-learn's LogisticRegression without penalty, and coefficients.csv states it in the
    # columns' own units (the standardization undone).
    import csv

    import numpy as np

    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(40, 12, 400), rng.normal(3, 0.5, 400)])
    y = (rng.random(400) < 1 / (1 + np.exp(-(0.08 * (x[:, 0] - 40) - 1.5 * (x[:, 1] - 3))))).astype(int)
    lines = ["age,dose,outcome"] + [f"{a:.6f},{d:.6f},{t}" for (a, d), t in zip(x, y, strict=True)]
    path = table(tmp_path, "\n".join(lines) + "\n")
    run_dir = tmp_path / "run"
    every_row = ["dataset.val_fraction=0", "dataset.test_fraction=0", "objective.metric=train/loss"]
    own = ["dataset=csv", f"dataset.path={path}", "dataset.target=outcome", *every_row]
    train_here(run_dir, *own, "optimizer=lbfgs", "trainer.epochs=30")
    with (run_dir / "coefficients.csv").open() as file:
        got = {row["feature"]: float(row["weight"]) for row in csv.DictReader(file)}
    fit = linear_model.LogisticRegression(penalty=None, tol=1e-12, max_iter=10_000).fit(x, y)
    assert list(got) == ["(intercept)", "age", "dose"]
    assert got["(intercept)"] == pytest.approx(fit.intercept_[0], abs=1e-3)
    assert [got["age"], got["dose"]] == pytest.approx(fit.coef_[0].tolist(), abs=1e-3)

"""Your own table as a classification dataset: a CSV file (`dataset=csv`, conf/dataset/csv.yaml).

The file has a header row; comma, semicolon or tab separated (found from the file), quoted fields as
Python's csv module reads them. One column is the target; the features are the others (or those listed),
numeric ones as they are and categorical ones one-hot (`column=value`). The rows are split by a seeded
permutation into test, validation and training rows, and each numeric feature is standardized with the
mean and standard deviation of the training rows only (no statistic of a held-out row leaks into
training; src.evaluate, which loads the same file with the same seed, gets the same).
Every problem with the table is one line naming the file, the line and the column.
"""

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from src.data import ClassificationData, Split, against_the_rest, seeded_split
from src.errors import DataError

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t"


def load_csv(
    path: str,
    target: str,
    features: Sequence[str] | None,
    positive: str | None,
    categorical: Sequence[str],
    standardize: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
) -> ClassificationData:
    """The table at `path` as train, validation and test splits (a fraction of 0: no such split)."""
    file = Path(path)
    header, rows, lines = read_table(file)
    if target not in header:
        raise DataError(f"{file} has no column {target!r} (dataset.target); its columns: {', '.join(header)}")
    chosen = [name for name in header if name != target] if features is None else list(features)
    for name in [*chosen, *categorical]:
        if name not in header or name == target:
            raise DataError(f"{file} has no feature column {name!r}; its columns: {', '.join(header)}")
    if not chosen:
        raise DataError(
            f"{file} has no feature column beside {target!r}; add columns or list dataset.features"
        )
    at = {name: header.index(name) for name in header}
    labels, class_names = encode_target(file, [row[at[target]] for row in rows], lines, target, positive)
    columns, names, numeric = [], [], []
    for name in chosen:
        values = [row[at[name]].strip() for row in rows]
        if name in categorical:
            levels = sorted(set(values))
            for level in levels:
                columns.append([1.0 if value == level else 0.0 for value in values])
                names.append(f"{name}={level}")
        else:
            columns.append(
                [number(file, value, line, name) for value, line in zip(values, lines, strict=True)]
            )
            numeric.append(len(names))
            names.append(name)
    inputs = torch.tensor(columns, dtype=torch.float64).T.contiguous()
    splits = seeded_split(len(rows), seed, {"test": test_fraction, "val": val_fraction})
    if not len(splits["train"]):
        raise DataError(
            f"{file} has {len(rows)} rows: dataset.val_fraction={val_fraction} and dataset.test_fraction="
            f"{test_fraction} leave none to train on; use smaller fractions"
        )
    scaling = [(0.0, 1.0)] * len(names)
    if standardize and numeric:  # one-hot columns stay 0 and 1
        mean, std = column_statistics(inputs[:, numeric], splits["train"], [names[i] for i in numeric], file)
        inputs[:, numeric] = (inputs[:, numeric] - mean) / std
        for position, m, s in zip(numeric, mean.tolist(), std.tolist(), strict=True):
            scaling[position] = (m, s)
    label_tensor = torch.tensor(labels)
    parts = {
        name: Split(inputs[index].float(), label_tensor[index]) if len(index) else None
        for name, index in splits.items()
    }
    train = parts["train"]
    assert train is not None
    return ClassificationData(train=train, val=parts["val"], test=parts["test"], class_names=class_names,
                              feature_names=tuple(names), feature_scaling=tuple(scaling))  # fmt: skip


def read_table(file: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, the file line each row ends on), every row as long as the header."""
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            sample = handle.read(SNIFF_BYTES)
            handle.seek(0)
            try:
                dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=DELIMITERS)
            except csv.Error:  # one column, or nothing to tell by: commas
                dialect = csv.excel
            reader = csv.reader(handle, dialect)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                if len(row) != len(header or []):
                    raise DataError(
                        f"{file}, line {reader.line_num}: {len(row)} fields, but the header has "
                        f"{len(header or [])}; quote fields that hold the delimiter"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{file} cannot be read as a table ({error}); give dataset.path=FILE.csv") from None
    if not header or not rows:
        raise DataError(f"{file} is empty: it needs a header row and at least one row of data")
    header = [name.strip() for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{file}: the header names {', '.join(repeated)} more than once; rename them")
    return header, rows, lines


def encode_target(
    file: Path, values: list[str], lines: list[int], target: str, positive: str | None
) -> tuple[list[int], tuple[str, ...]]:
    """Class indices and class names: with `positive`, two classes (it is class 1); otherwise the
    target's distinct values, sorted (as numbers when they all are), named by their text."""
    texts = [value.strip() for value in values]
    for text, line in zip(texts, lines, strict=True):
        if not text:
            raise DataError(f"{file}, line {line}, column {target!r}: empty cell; every row needs a class")
    distinct = sorted(
        set(texts), key=lambda text: (0, float(text), text) if is_number(text) else (1, 0.0, text)
    )
    if positive is not None:
        positive = str(positive).strip()
        if positive not in distinct:
            raise DataError(
                f"{file}: column {target!r} never holds {positive!r} (dataset.positive); its values: "
                f"{', '.join(distinct[:10])}"
            )
        if distinct == [positive]:
            raise DataError(
                f"{file}: column {target!r} holds only {positive!r}; a classifier needs two classes"
            )
        return [int(text == positive) for text in texts], against_the_rest(distinct, positive)
    if len(distinct) < 2:
        raise DataError(
            f"{file}: column {target!r} holds one class only ({distinct[0]!r}); a classifier needs two"
        )
    index = {text: position for position, text in enumerate(distinct)}
    return [index[text] for text in texts], tuple(distinct)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def number(file: Path, text: str, line: int, column: str) -> float:
    if not text:
        raise DataError(f"{file}, line {line}, column {column!r}: empty cell; fill it or drop the row")
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{file}, line {line}, column {column!r}: {text!r} is not a number; fix it, or one-hot the "
            f"column with dataset.categorical=[{column}]"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{file}, line {line}, column {column!r}: {text!r} is not a finite number")
    return value


def column_statistics(
    inputs: torch.Tensor, train: torch.Tensor, names: list[str], file: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each column's mean and standard deviation over the training rows (what standardizes it)."""
    mean, std = inputs[train].mean(dim=0), inputs[train].std(dim=0, correction=0)
    constant = [name for name, value in zip(names, std.tolist(), strict=True) if value == 0.0]
    if constant:
        raise DataError(
            f"{file}: column {constant[0]!r} is constant in the training rows, so it cannot be standardized; "
            "drop it from dataset.features, or set dataset.standardize=false"
        )
    return mean, std

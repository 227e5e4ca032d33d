"""Datasets as tensors: the tutorial's toy set and MNIST or Fashion-MNIST, all ten classes or a subset.

Everything is loaded, scaled and flattened once; the trainer then slices tensors, with no per-sample work.
"""

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from src.errors import DataError
from src.idx import read_idx_cached

log = logging.getLogger(__name__)


class ImageFamily(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"


@dataclass(frozen=True)
class Split:
    """Inputs (N, features) as float32 and labels (N,) as class indices; labels may be unknown."""

    inputs: Tensor
    labels: Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device) -> "Split":
        labels = None if self.labels is None else self.labels.to(device)
        return Split(self.inputs.to(device), labels)


@dataclass(frozen=True)
class ClassificationData:
    """The splits a run uses; `val` and `test` may be absent. Labels index `class_names`; with two classes,
    label 1 is the positive class."""

    train: Split
    val: Split | None
    test: Split | None
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None  # a table's columns (one-hot ones as column=value)
    # (channels, height, width) of image inputs, each flattened channel by channel; None: not images
    image_shape: tuple[int, int, int] | None = None
    # (mean, std) each feature was standardized by (0, 1: as it was), to state weights in its own units
    feature_scaling: tuple[tuple[float, float], ...] | None = None

    @property
    def num_features(self) -> int:
        return self.train.inputs.shape[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @functools.cached_property
    def fingerprint(self) -> str:
        """The splits' sizes and a checksum of their examples, which a resumed run's data must match
        (a dataset.root that moved must hold the same files). Summed in float64, so that the order of
        the sum (threads) cannot change it; once per data object, which the runs of a stack share."""
        parts = []
        for name, split in (("train", self.train), ("val", self.val), ("test", self.test)):
            if split is None:
                continue
            labels = "" if split.labels is None else f", labels {int(split.labels.sum())}"
            total = float(split.inputs.sum(dtype=torch.float64))
            parts.append(f"{name}: {len(split)} examples, sum {total:.9g}{labels}")
        return "; ".join(parts)

    def to(self, device: torch.device) -> "ClassificationData":
        """The same data on `device`; moved once so that training never copies."""
        return replace(
            self,
            train=self.train.to(device),
            val=None if self.val is None else self.val.to(device),
            test=None if self.test is None else self.test.to(device),
        )


def seeded_split(count: int, seed: int, held_out: dict[str, float]) -> dict[str, Tensor]:
    """Indices of `count` examples, split by one permutation seeded by `seed`: each held-out split in
    turn takes its fraction (rounded) from the front, and "train" the rest (which may be empty)."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    splits, start = {}, 0
    for name, fraction in held_out.items():
        size = round(count * fraction)
        splits[name], start = order[start : start + size], start + size
    return splits | {"train": order[start:]}


def against_the_rest(class_names: Sequence[str], positive: str) -> tuple[str, str]:
    """The names of two classes, `positive` (label 1) against all the others: the other's own name when
    there is only one, else "not <positive>"."""
    others = [name for name in class_names if name != positive]
    return (others[0] if len(others) == 1 else f"not {positive}", positive)


def load_toy(
    inputs: list[float], labels: list[int], predict_inputs: list[float], seed: int = 0
) -> ClassificationData:
    """The tutorial's data: train on (x, y) pairs, then predict unlabeled inputs such as x=4."""
    return ClassificationData(
        train=Split(torch.tensor(inputs).view(-1, 1), torch.tensor(labels, dtype=torch.long)),
        val=None,
        test=Split(torch.tensor(predict_inputs).view(-1, 1)),
        class_names=("0", "1"),
    )


# The four files of each family, as the official sites name them; torchvision keeps them in
# ROOT/<folder>/raw, Debian and hand downloads in one flat folder.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TORCHVISION_FOLDERS = {ImageFamily.mnist: "MNIST", ImageFamily.fashion_mnist: "FashionMNIST"}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


NUM_CLASSES = 10  # of every MNIST-family dataset: labels are 0-9
FASHION_NAMES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")  # fmt: skip


def class_name(family: ImageFamily, label: int) -> str:
    return FASHION_NAMES[label] if family == ImageFamily.fashion_mnist else str(label)


def default_root(family: ImageFamily) -> Path:
    """Where a family lives when dataset.root is null: Debian's Fashion-MNIST if installed, else data/."""
    if family == ImageFamily.fashion_mnist and DEBIAN_FASHION_MNIST.is_dir():
        return DEBIAN_FASHION_MNIST
    return Path("data")


def find_idx_file(root: Path, family: ImageFamily, name: str) -> Path | None:
    """The file `name` (or `name.gz`) in torchvision's layout under root, or flat in root."""
    for folder in (root / TORCHVISION_FOLDERS[family] / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _locate_files(root: Path, family: ImageFamily, download: bool) -> dict[str, Path]:
    names = [name for pair in IDX_FILES.values() for name in pair]
    found = {name: find_idx_file(root, family, name) for name in names}
    if None in found.values() and download:
        _download(root, family)
        found = {name: find_idx_file(root, family, name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        folder = root / TORCHVISION_FOLDERS[family] / "raw"
        raise DataError(
            f"{family.value} data not found: {', '.join(missing)} (optionally .gz) missing in "
            f"{root.resolve()} and {folder.resolve()}; set dataset.root=DIR to a folder holding "
            "them, or dataset.download=true"
        )
    return {name: path for name, path in found.items() if path is not None}


def _download(root: Path, family: ImageFamily) -> None:
    from torchvision import datasets  # only needed here; keeps start-up fast

    dataset_class = {ImageFamily.mnist: datasets.MNIST, ImageFamily.fashion_mnist: datasets.FashionMNIST}
    folder = (root / TORCHVISION_FOLDERS[family] / "raw").resolve()
    existed = [path for path in (root, folder.parent, folder) if path.exists()]
    try:
        for train in (True, False):
            dataset_class[family](str(root), train=train, download=True)
    except Exception as error:  # torchvision raises many kinds (URLError, RuntimeError, ...)
        for made in (folder, folder.parent, root):  # the empty folders it made, innermost first
            if made not in existed and made.is_dir() and not any(made.iterdir()):
                made.rmdir()
        raise DataError(
            f"could not download {family.value} into {folder} ({download_failure(error)}); copy the four "
            "idx files there by hand, or set dataset.root=DIR to a folder that has them"
        ) from None


def download_failure(error: Exception) -> str:
    """Why a download failed, whole: torchvision's message names each mirror it tried, then its error
    ("Tried https://..., got:" / "<urlopen error [Errno -2] Name or service not known>")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if not line.startswith("Tried ")]
    said = causes[-1] if causes else type(error).__name__
    first = lines[0].rstrip(":") if lines else ""
    if "urlopen error" in said or "Name or service" in said:
        said += ": no connection to the download servers"
    return f"{first}: {said}" if first and first != said else said


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx_cached(images_path), read_idx_cached(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"{images_path} must hold images (N, H, W) and {labels_path} labels (N,), "
            f"got shapes {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the files come from different sets"
        )
    if 0 in images.shape[1:]:
        raise DataError(f"{images_path} holds images of size {images.shape[1]}x{images.shape[2]}; replace it")
    outside = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(outside):  # never dropped in silence: a run would learn from fewer images than the file has
        raise DataError(
            f"{labels_path} holds label {int(labels[outside[0]])} at position {int(outside[0])} "
            f"({len(outside)} labels outside 0-{NUM_CLASSES - 1}); replace the file"
        )
    return images, labels


def _class_split(
    images: np.ndarray, labels: np.ndarray, classes: list[int], mean: float, std: float
) -> Split:
    """The examples of `classes`, labelled by their index in `classes` (so the second of a pair is 1)."""
    keep = np.isin(labels, classes)
    # Select before converting, so only the chosen classes are ever held as float32.
    pixels = torch.from_numpy(images[keep].reshape(int(keep.sum()), -1).astype(np.float32))
    inputs = pixels.div_(255.0).sub_(mean).div_(std)  # in place: no second copy of the split
    index_of = np.zeros(256, dtype=np.int64)
    index_of[classes] = np.arange(len(classes))
    return Split(inputs, torch.from_numpy(index_of[labels[keep]]))


def load_images(
    family: ImageFamily,
    root: str | None,
    classes: list[int],
    val_fraction: float,
    download: bool,
    mean: float,
    std: float,
    seed: int = 0,
) -> ClassificationData:
    """Some classes (two or more) of an MNIST-family dataset: train/val from the training files, test from
    t10k. Label i is `classes[i]`."""
    family = ImageFamily(family)
    classes = [int(c) for c in classes]
    root_path = Path(root) if root is not None else default_root(family)
    if root is None:  # the config tree says `root: null`: say which folder that meant
        log.info(f"dataset.root=null: {family.value} from {root_path.resolve()}")
    try:
        files = _locate_files(root_path, family, download)
    except (RuntimeError, OSError) as error:  # a symlink loop, a folder that cannot be read
        if isinstance(error, RuntimeError) and "loop" not in str(error).lower():
            raise  # not the folder's fault
        raise DataError(f"dataset.root={root_path} cannot be read ({' '.join(str(error).split())})") from None
    splits, shapes = {}, {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        images, labels = _read_pair(files[images_name], files[labels_name])
        shapes[files[images_name]] = images.shape[1:]
        if len(set(shapes.values())) > 1:
            (train_file, train_shape), (test_file, test_shape) = shapes.items()
            raise DataError(
                f"{train_file} holds {train_shape[0]}x{train_shape[1]} images but {test_file} "
                f"{test_shape[0]}x{test_shape[1]}; the files come from different sets"
            )
        missing = [c for c in classes if c not in set(np.unique(labels).tolist())]
        if missing:  # a class no split can learn or measure
            raise DataError(f"{files[labels_name]} has no examples of class {', '.join(map(str, missing))}")
        splits[split] = _class_split(images, labels, classes, mean, std)

    train = splits["train"]
    assert train.labels is not None
    indices = seeded_split(len(train), seed, {"val": val_fraction})
    if not len(indices["train"]):
        raise DataError(
            f"dataset.val_fraction={val_fraction} leaves no training examples of the {len(train)}; "
            "use a smaller fraction, such as 0.1"
        )
    val_idx, train_idx = indices["val"], indices["train"]
    height, width = next(iter(shapes.values()))  # of train and test alike (checked above)
    val = Split(train.inputs[val_idx], train.labels[val_idx]) if len(val_idx) else None
    return ClassificationData(
        train=Split(train.inputs[train_idx], train.labels[train_idx]),
        val=val,
        test=splits["test"],
        class_names=tuple(class_name(family, c) for c in classes),
        image_shape=(1, int(height), int(width)),
    )

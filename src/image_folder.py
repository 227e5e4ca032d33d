"""Your own images as a classification dataset: a folder of class folders (`dataset=image_folder`,
conf/dataset/image_folder.yaml).

The layout is torchvision's ImageFolder: ROOT/<class>/<image>, the class names those of the folders,
sorted (torchvision's `find_classes`); images may sit in sub-folders of their class folder. Any file
Pillow reads is an image (PNG, JPEG, BMP, GIF, TIFF, WebP, ...). Every image is decoded once, turned
upright (a camera's EXIF orientation), converted to grayscale or RGB, resized to `size` and held as one
tensor, like the MNIST family: the trainer slices tensors, with no per-image work. The images are split by
a seeded permutation into test, validation and training images, and each channel is standardized with the
mean and standard deviation of the training images' pixels only (src.evaluate, which loads the same
folder with the same seed, gets the same).
Files that are not images, unreadable images and files outside the class folders are skipped and counted
in one line; every problem with the layout is one line naming the folder.
"""

import logging
from collections import Counter
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from src.data import ClassificationData, Split, against_the_rest, seeded_split
from src.errors import DataError

log = logging.getLogger(__name__)

EXAMPLES = 3  # skipped files named in the summary line, per kind


class Color(str, Enum):
    auto = "auto"  # grayscale when every image is (red, green and blue equal everywhere), else RGB
    grayscale = "grayscale"
    rgb = "rgb"


def load_image_folder(
    root: str,
    size: int | Sequence[int] | None,
    color: Color,
    positive: str | None,
    standardize: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int = 0,
) -> ClassificationData:
    """The images under `root`, one folder per class, as train, validation and test splits (a fraction
    of 0: no such split). `size`: [height, width] every image is resized to; None keeps their own,
    which must then be one size; one number: squares of that side."""
    folder = Path(root)
    classes, files, outside = list_files(folder)
    if positive is not None and positive not in classes:
        raise DataError(
            f"{folder} has no class folder {positive!r} (dataset.positive); its classes: {', '.join(classes)}"
        )
    mode = "L" if Color(color) == Color.grayscale else "RGB"
    if isinstance(size, int):
        size = (size, size)
    resize = None if size is None else (int(size[1]), int(size[0]))  # Pillow's (width, height)
    extensions = Image.registered_extensions()  # every format Pillow can open
    not_images, unreadable, paths, pictures, labels = [], [], [], [], []
    for path, label in files:
        if path.suffix.lower() not in extensions:
            not_images.append(path)
            continue
        try:
            pictures.append(decode(path, mode, resize))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
            unreadable.append((path, error))  # truncated, corrupt, or not what its name says
            continue
        paths.append(path)
        labels.append(label)
    counts = Counter(labels)
    empty = [name for index, name in enumerate(classes) if not counts[index]]
    if empty:
        skipped = sum(1 for _, label in files if classes[label] == empty[0])
        raise DataError(
            f"{folder / empty[0]} holds no image Pillow can read ({skipped} files skipped); add images "
            "of that class, or remove the folder"
        )
    refuse_mixed_sizes(folder, pictures, paths)
    pixels = torch.from_numpy(np.stack(pictures))  # (N, height, width, channels), uint8
    if Color(color) == Color.auto and bool((pixels == pixels[..., :1]).all()):
        pixels = pixels[..., :1]  # no image has colour: one channel, a third of the features
    pixels = pixels.permute(0, 3, 1, 2).contiguous()  # channel by channel, as torch's images are
    _, channels, height, width = pixels.shape
    log_summary(folder, classes, counts, (channels, height, width), not_images, unreadable, outside)

    label_tensor = torch.tensor(labels)
    class_names = tuple(classes)
    if positive is not None:
        label_tensor = (label_tensor == classes.index(positive)).long()
        class_names = against_the_rest(classes, positive)
    splits = seeded_split(len(labels), seed, {"test": test_fraction, "val": val_fraction})
    if not len(splits["train"]):
        raise DataError(
            f"{folder} has {len(labels)} images: dataset.val_fraction={val_fraction} and "
            f"dataset.test_fraction={test_fraction} leave none to train on; use smaller fractions"
        )
    inputs = pixels.float().div_(255.0)
    if standardize:
        seen = inputs[splits["train"]]  # no statistic of a held-out image leaks into training
        mean = seen.mean(dim=(0, 2, 3), keepdim=True)
        std = seen.std(dim=(0, 2, 3), correction=0, keepdim=True)
        inputs = inputs.sub_(mean).div_(std.where(std > 0, 1.0))  # a channel blank in every image: as is
    inputs = inputs.view(len(labels), -1)
    parts = {
        name: Split(inputs[index], label_tensor[index]) if len(index) else None
        for name, index in splits.items()
    }
    train = parts["train"]
    assert train is not None
    shape = (channels, height, width)
    return ClassificationData(train, parts["val"], parts["test"], class_names, image_shape=shape)


def list_files(folder: Path) -> tuple[list[str], list[tuple[Path, int]], list[Path]]:
    """(class names, every file of each class folder with its class index, the files outside them)."""
    from torchvision.datasets.folder import find_classes, make_dataset  # only needed here

    if not folder.is_dir():
        raise DataError(
            f"dataset.root={folder} is not a folder; give dataset.root=DIR, a folder with one sub-folder "
            "of images per class"
        )
    try:
        found = find_classes(folder)[0]
        # Hidden folders are no classes: Jupyter's .ipynb_checkpoints, a copy's .git, macOS's .Trashes
        classes = [name for name in found if not name.startswith(".")]
        if not classes:
            raise FileNotFoundError(folder)
        everything = make_dataset(
            folder,
            {name: i for i, name in enumerate(classes)},
            is_valid_file=lambda _: True,
            allow_empty=True,
        )
        outside = sorted(path for path in folder.iterdir() if path.is_file())
    except FileNotFoundError:
        raise DataError(
            f"{folder} has no class folders; put each class's images in a sub-folder named after it "
            f"({folder}/cat/1.png, {folder}/dog/1.png, ...)"
        ) from None
    except OSError as error:  # a folder that cannot be read
        raise DataError(f"dataset.root={folder} cannot be read ({' '.join(str(error).split())})") from None
    if len(classes) == 1:
        raise DataError(
            f"{folder} has one class folder ({classes[0]}); a classifier needs two or more: add a "
            "sub-folder of images for each other class"
        )
    return classes, [(Path(path), label) for path, label in everything], outside


def decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """The image at `path` as (height, width, channels) uint8, upright, in `mode`, resized to `size`."""
    with Image.open(path) as opened:
        # Upright as it is shown: a phone stores its photos sideways with an EXIF note to turn them.
        image = ImageOps.exif_transpose(opened)
    if image.mode.startswith("I;16"):  # 16-bit gray: Pillow's convert would clip it at 255; keep its top byte
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    image = image.convert(mode)
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image).reshape(image.height, image.width, -1)


def refuse_mixed_sizes(folder: Path, pictures: list[np.ndarray], paths: list[Path]) -> None:
    """Images can only be stacked when they are one size; name the sizes and one image of each."""
    sizes: dict[tuple[int, int], list[Path]] = {}
    for picture, path in zip(pictures, paths, strict=True):
        sizes.setdefault(picture.shape[:2], []).append(path)
    if len(sizes) > 1:
        found = ", ".join(
            f"{h}x{w} ({len(where)}, e.g. {where[0].relative_to(folder)})" for (h, w), where in sizes.items()
        )
        raise DataError(
            f"{folder} holds images of {len(sizes)} sizes (height x width: {found}); set "
            "dataset.size=[H,W] to resize them all to one"
        )


def some(one: str, many: str, names: list[str]) -> str:
    """ "2 files that are not images (a.txt, b.md)": how many, and the first few; "" for none."""
    if not names:
        return ""
    more = ", ..." if len(names) > EXAMPLES else ""
    return f"{len(names)} {one if len(names) == 1 else many} ({', '.join(names[:EXAMPLES])}{more})"


def why(error: BaseException) -> str:
    """What is wrong with an image file, in a few words (Pillow's messages repeat the file's path)."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow knows"
    return " ".join(str(error).split()) or type(error).__name__


def log_summary(
    folder: Path,
    classes: list[str],
    counts: Counter[int],
    shape: Sequence[int],
    not_images: list[Path],
    unreadable: Sequence[tuple[Path, BaseException]],
    outside: list[Path],
) -> None:
    """One line: what was loaded, and what was skipped and why (a warning then)."""
    channels, height, width = shape

    def relative(path: Path) -> str:
        return str(path.relative_to(folder))

    per_class = ", ".join(f"{name} {counts[index]}" for index, name in enumerate(classes))
    line = (
        f"dataset.root={folder}: {sum(counts.values())} images of {len(classes)} classes ({per_class}), "
        f"{height}x{width} {'grayscale' if channels == 1 else 'RGB'}"
    )
    skipped = [
        some("file that is not an image", "files that are not images", [relative(p) for p in not_images]),
        some("unreadable image", "unreadable images", [f"{relative(p)}: {why(e)}" for p, e in unreadable]),
        some("file outside the class folders", "files outside the class folders", [p.name for p in outside]),
    ]
    skipped = [words for words in skipped if words]
    if skipped:
        log.warning(f"{line}; skipped {', '.join(skipped)}")
    else:
        log.info(line)

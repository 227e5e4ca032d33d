"""Your own images (dataset=image_folder, src/image_folder.py): the layout's classes, resizing, grayscale
and RGB, what is skipped (one line), each bad layout's one line, and a run that names its classes."""

import csv
import io
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from src.config import ImageFolderDataConfig
from src.errors import ConfigError, DataError
from src.evaluate import evaluate_checkpoint
from src.image_folder import load_image_folder
from src.pictures import SCALE_BAR, TEMPLATE_SIDE, WEIGHT_SIDE, enlarged_size, mistakes_grid, weight_map
from tests.helpers import command, compose_config, read_metrics, train_here

SETTINGS = dict(size=None, color="auto", positive=None, standardize=False, val_fraction=0.0,
                test_fraction=0.0)  # fmt: skip
LEVELS = {"cat": 40, "dog": 120, "owl": 200}  # each class's images are this gray, so labels can be checked


def picture(level, size=(6, 8), tint=(0, 0, 0)):
    """A (height, width) image of one gray level, plus `tint` on its channels (an RGB image then)."""
    height, width = size
    if tint == (0, 0, 0):
        return Image.fromarray(np.full((height, width), level, dtype=np.uint8))
    return Image.fromarray(
        np.full((height, width, 3), level, dtype=np.uint8) + np.array(tint, dtype=np.uint8)
    )


def write_folder(root, count=6, levels=LEVELS, **options):
    """`count` images per class under root/<class>/, PNG and JPEG in turn (JPEG is lossy: tests that read
    exact levels use PNG only, `formats=("png",)`)."""
    formats = options.pop("formats", ("png", "jpg"))
    for name, level in levels.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            suffix = formats[i % len(formats)]
            picture(level, **options).save(root / name / f"{i}.{suffix}")
    return root


def load(root, **settings):
    return load_image_folder(str(root), **{**SETTINGS, **settings})


def test_class_folders_are_the_classes_sorted_and_each_image_is_labelled_by_its_folder(tmp_path):
    root = write_folder(tmp_path / "pets", formats=("png",))
    (root / "owl" / "more").mkdir()
    picture(200).save(root / "owl" / "more" / "deep.png")  # a sub-folder of a class folder: that class
    (root / ".ipynb_checkpoints").mkdir()  # a hidden folder is no class
    data = load(root, val_fraction=0.25, test_fraction=0.25, seed=1)
    assert data.class_names == ("cat", "dog", "owl")
    assert data.image_shape == (1, 6, 8) and data.num_features == 48
    assert (len(data.train), len(data.val), len(data.test)) == (9, 5, 5)
    for split in (data.train, data.val, data.test):
        levels = (split.inputs[:, 0] * 255).round().long()  # standardize=False: pixels / 255
        assert levels.tolist() == [list(LEVELS.values())[label] for label in split.labels.tolist()]
    again = load(root, val_fraction=0.25, test_fraction=0.25, seed=1)
    other = load(root, val_fraction=0.25, test_fraction=0.25, seed=2)
    assert torch.equal(again.test.labels, data.test.labels) and not torch.equal(
        other.train.inputs, data.train.inputs
    )


def test_each_channel_is_standardized_by_the_training_images_only(tmp_path):
    root = tmp_path / "pets"
    for name, tint in (("a", (0, 30, 60)), ("b", (50, 0, 20))):
        (root / name).mkdir(parents=True)
        for i in range(10):
            picture(10 * i, tint=tint).save(root / name / f"{i}.png")
    data = load(root, standardize=True, val_fraction=0.3, test_fraction=0.2)
    assert data.image_shape == (3, 6, 8)
    channels = data.train.inputs.view(len(data.train), 3, -1).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(channels.mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(channels.std(dim=1, correction=0), torch.ones(3), atol=1e-5)
    assert data.val.inputs.mean().abs() > 1e-3  # held-out images: the training images' statistics


def test_size_resizes_every_image_and_so_allows_mixed_sizes(tmp_path):
    root = write_folder(tmp_path / "pets", formats=("png",))
    picture(40, size=(30, 20)).save(root / "cat" / "big.png")
    data = load(root, size=[4, 10])
    assert data.image_shape == (1, 4, 10) and data.num_features == 40
    assert len(data.train) == 19
    assert (data.train.inputs * 255).round().unique().tolist() == [40.0, 120.0, 200.0]  # resized, levels kept
    assert load(root, size=5).image_shape == (1, 5, 5)  # one number: squares


def test_color_auto_keeps_gray_images_one_channel_and_colour_ones_three(tmp_path):
    gray_as_rgb = write_folder(tmp_path / "gray", tint=(0, 0, 0))
    for path in gray_as_rgb.rglob("*.png"):  # stored as RGB, but red, green and blue equal
        Image.open(path).convert("RGB").save(path)
    assert load(gray_as_rgb).image_shape == (1, 6, 8)
    assert load(gray_as_rgb, color="rgb").image_shape == (3, 6, 8)
    colour = write_folder(tmp_path / "colour", tint=(10, 0, 30), formats=("png",))
    assert load(colour).image_shape == (3, 6, 8)
    gray = load(colour, color="grayscale")
    assert gray.image_shape == (1, 6, 8)
    expected = np.asarray(Image.open(colour / "cat" / "0.png").convert("L"))[0, 0]  # Pillow's luma
    assert (gray.train.inputs * 255).round().min().item() == expected
    deep = write_folder(tmp_path / "deep", formats=("png",))
    for path in deep.rglob("*.png"):  # 16 bits a pixel, as scientific cameras save them
        level = int(np.asarray(Image.open(path))[0, 0])
        Image.fromarray(np.full((6, 8), level * 256 + 255, dtype=np.uint16)).save(path)
    assert Image.open(deep / "cat" / "0.png").mode == "I;16"
    assert (load(deep).train.inputs * 255).round().unique().tolist() == [40.0, 120.0, 200.0]  # not clipped


def test_files_that_are_not_images_are_skipped_and_counted_in_one_line(tmp_path, caplog):
    root = write_folder(tmp_path / "pets")
    (root / "cat" / "notes.txt").write_text("not a picture")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1")
    (root / "owl" / "fake.jpg").write_bytes(b"no JPEG at all")
    whole = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(whole, format="PNG")
    (root / "dog" / "cut.png").write_bytes(whole.getvalue()[:2000])  # a download cut short
    (root / "README.md").write_text("beside the class folders")
    with caplog.at_level(logging.INFO, logger="src.image_folder"):
        data = load(root)
    assert len(data.train) == 18
    (line,) = [record for record in caplog.records if record.name == "src.image_folder"]
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        f"dataset.root={root}: 18 images of 3 classes (cat 6, dog 6, owl 6), 6x8 grayscale; skipped "
        "2 files that are not images (cat/notes.txt, dog/.DS_Store), 2 unreadable images (dog/cut.png: "
        "image file is truncated, owl/fake.jpg: not an image Pillow knows), 1 file outside the class "
        "folders (README.md)"
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="src.image_folder"):
        load(write_folder(tmp_path / "clean"))
    assert [record.levelno for record in caplog.records] == [logging.INFO]  # nothing skipped: no warning


def bad_layouts():
    """(what to do to a good folder of cat, dog and owl, settings, the one line expected)."""

    def remove_all(root):
        for name in LEVELS:
            shutil.rmtree(root / name)
        picture(40).save(root / "a.png")  # an image, but in no class folder

    def one_class(root):
        for name in ("dog", "owl"):
            for path in (root / name).iterdir():
                path.unlink()
            (root / name).rmdir()

    def only_text(root):
        for path in (root / "dog").iterdir():
            path.unlink()
        (root / "dog" / "list.txt").write_text("x")

    def only_broken(root):
        for path in (root / "owl").iterdir():
            path.write_bytes(b"broken")

    def odd_size(root):
        picture(120, size=(7, 8)).save(root / "dog" / "odd.png")

    return [
        (lambda root: None, {"root": "nowhere"}, "dataset.root=nowhere is not a folder; give dataset.root="),
        (remove_all, {}, r"pets has no class folders; put each class's images in a sub-folder named after"),
        (one_class, {}, r"pets has one class folder \(cat\); a classifier needs two or more"),
        (only_text, {}, r"pets/dog holds no image Pillow can read \(1 files skipped\); add images"),
        (only_broken, {}, r"pets/owl holds no image Pillow can read \(6 files skipped\)"),
        (odd_size, {}, r"pets holds images of 2 sizes \(height x width: 6x8 \(18, e.g. cat/0.png\), 7x8 \(1, "
         r"e.g. dog/odd.png\)\); set dataset.size=\[H,W\] to resize them all to one"),
        (lambda root: None, {"positive": "cow"}, r"no class folder 'cow' \(dataset.positive\); its classes: "
         "cat, dog, owl"),
        (lambda root: None, {"val_fraction": 0.5, "test_fraction": 0.5}, "has 18 images: dataset.val_fraction"
         r"=0.5 and dataset.test_fraction=0.5 leave none to train on"),
    ]  # fmt: skip


@pytest.mark.parametrize("change,settings,message", bad_layouts())
def test_each_bad_layout_is_one_line_naming_the_fix(tmp_path, change, settings, message):
    root = write_folder(tmp_path / "pets")
    change(root)
    with pytest.raises(DataError, match=message) as refused:
        load_image_folder(**{"root": str(root), **SETTINGS, **settings})
    assert "\n" not in str(refused.value)


def test_positive_makes_two_classes_of_it_against_the_others(tmp_path):
    root = write_folder(tmp_path / "pets", formats=("png",))
    data = load(root, positive="dog")
    assert data.class_names == ("not dog", "dog")
    levels = (data.train.inputs[:, 0] * 255).round()
    assert torch.equal(data.train.labels, (levels == LEVELS["dog"]).long())
    pair = write_folder(tmp_path / "pair", levels={"cat": 40, "dog": 120})
    assert load(pair, positive="cat").class_names == ("dog", "cat")


def test_the_recipe_and_the_schema(tmp_path):
    cfg = compose_config("dataset=image_folder")
    assert cfg.trainer.batch_size == 64 and cfg.trainer.epochs == 30 and cfg.loss.reduction == "mean"
    assert cfg.objective.metric == "val/loss" and cfg.dataset.size is None and cfg.dataset.color == "auto"
    settings = {**SETTINGS, "root": "x", "val_fraction": 0.2, "test_fraction": 0.2}
    for size in ([0, 8], [32], "abc", [4, 5.5], True):
        with pytest.raises(ConfigError, match=r"dataset.size must be \[height, width\] in pixels \(or one"):
            ImageFolderDataConfig(**{**settings, "size": size}).check()
    for size in (None, 32, [4, 10]):
        ImageFolderDataConfig(**{**settings, "size": size}).check()
    with pytest.raises(ConfigError, match=r"dataset.val_fraction \+ dataset.test_fraction must be below 1"):
        ImageFolderDataConfig(**{**settings, "test_fraction": 0.8}).check()


def test_a_run_on_an_image_folder_names_its_classes_and_evaluates_again(tmp_path):
    root = tmp_path / "pets"
    for index, (name, tint) in enumerate((("cat", (90, 0, 0)), ("dog", (0, 90, 0)), ("owl", (0, 0, 90)))):
        (root / name).mkdir(parents=True)
        rng = np.random.default_rng(index)
        for i in range(20):
            noise = rng.integers(0, 120, size=(5, 9, 3), dtype=np.uint8)
            Image.fromarray(noise + np.array(tint, dtype=np.uint8)).save(root / name / f"{i}.png")
    run_dir = tmp_path / "run"
    metrics = train_here(
        run_dir,
        "dataset=image_folder",
        f"dataset.root={root}",
        "trainer.epochs=3",
        "loss=ce",
        "optimizer.lr=0.1",
    )
    rows = list(csv.reader((run_dir / "predictions.csv").read_text().splitlines()))
    assert rows[0] == ["index", "label", "predicted", "p_cat", "p_dog", "p_owl"]
    assert len(rows) == 1 + 12 and {row[1] for row in rows[1:]} <= {"cat", "dog", "owl"}
    right = sum(row[1] == row[2] for row in rows[1:]) / 12
    assert metrics["test/accuracy"] == pytest.approx(right, abs=1e-6) and right > 0.9  # one colour per class
    assert set(read_metrics(run_dir)["test/accuracy_per_class"]) == {"cat", "dog", "owl"}
    pictures = run_dir / "pictures"
    assert {path.stem for path in pictures.glob("*.png")} >= {"confusion_matrix", "weight_map"}
    template_width, _ = enlarged_size(9, 5, TEMPLATE_SIDE)  # each class's map, as wide as its images
    assert Image.open(pictures / "weight_map.png").width == 8 + 3 * (template_width + 8)
    again = evaluate_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert again["test/accuracy"] == metrics["test/accuracy"]
    assert again["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-6)
    assert set(again["test/predictions_per_class"]) == {"cat", "dog", "owl"}


def test_pictures_of_images_of_any_shape_keep_it():
    tall = weight_map(np.linspace(-1, 1, 40 * 4).reshape(40, 4), "dog", "cat")
    assert tall.size == (WEIGHT_SIDE, WEIGHT_SIDE + SCALE_BAR)  # as high as a square one, and centred
    left = (WEIGHT_SIDE - enlarged_size(4, 40, WEIGHT_SIDE)[0]) // 2
    assert tall.getpixel((left + 1, 1)) == (0, 0, 255) and tall.getpixel((left - 2, 1)) == (255, 255, 255)
    images = np.zeros((1, 3, 5, 10))
    images[0, 0] = 1.0  # a red image
    grid = mistakes_grid(images, np.array([0]), np.array([1]), np.array([0.9]), ("a", "b"))
    tile = grid.crop((0, 64, grid.width, 64 + 42))
    assert (255, 0, 0) in {colour for _, colour in tile.getcolors(1 << 16)}  # drawn in its colours


@pytest.mark.slow  # a real process: run by CI's make test-slow
def test_the_command_refuses_a_bad_folder_in_one_line(tmp_path):
    root = write_folder(tmp_path / "pets", levels={"cat": 40})
    process = command("dataset=image_folder", f"dataset.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert process.returncode == 2
    assert process.stderr.strip() == (
        f"error: {root} has one class folder (cat); a classifier needs two or more: add a sub-folder of "
        "images for each other class"
    )
    assert not (tmp_path / "run").exists()  # refused: nothing is left

"""What a person sees: pictures in the run directory and TensorBoard, the progress bar in a terminal."""

import numpy as np
import pytest
from PIL import Image

from src import pictures
from tests.helpers import event_dir, launch, train_here, write_fake_dataset


def image_size(path):
    with Image.open(path) as image:
        image.verify()  # a valid PNG, not just a file
    with Image.open(path) as image:
        return image.format, image.size


def test_nice_ticks_are_round_and_cover_the_range():
    assert pictures.nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert pictures.nice_ticks(3.2, 47.0) == [10.0, 20.0, 30.0, 40.0]


def test_weight_map_colours_positive_red_and_negative_blue_with_a_scale():
    weights = np.zeros(28 * 28)
    weights[0], weights[-1] = 2.0, -2.0
    image = pictures.weight_map(weights, "8", "3")
    side = 28 * pictures.WEIGHT_SCALE
    assert image.size == (side, side + pictures.SCALE_BAR)
    assert image.getpixel((5, 5)) == (255, 0, 0)  # the first weight, strongly positive
    assert image.getpixel((side - 5, side - 5)) == (0, 0, 255)  # the last, strongly negative
    assert image.getpixel((side // 2, side // 2)) == (255, 255, 255)  # zero weight: white
    bar = [image.getpixel((x, side + 18)) for x in (26, side // 2, side - 26)]  # the colour scale
    assert bar[0][2] == 255 and bar[0][0] < 30 and min(bar[1]) > 240  # blue, white, red
    assert bar[2][0] == 255 and bar[2][2] < 30


def test_long_chart_labels_are_cut_to_fit():
    label_font = pictures.font(22)
    assert pictures.fit("short", label_font, 400) == "short"
    cut = pictures.fit("x" * 300, label_font, 400)
    assert cut.endswith("...") and label_font.getlength(cut) <= 400


def test_an_mnist_run_saves_its_pictures_and_shows_them_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = write_fake_dataset(tmp_path / "data", train_count=600)
    run_dir = tmp_path / "run"
    train_here(
        run_dir, "dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=2", "optimizer.lr=0.001"
    )
    folder = run_dir / "pictures"
    width, height = pictures.CHART_SIZE
    legend = pictures.LEGEND_ROW * 2 + 10  # train and val
    assert image_size(folder / "loss_curve.png") == ("PNG", (width, height + legend))
    weight_size = (28 * pictures.WEIGHT_SCALE, 28 * pictures.WEIGHT_SCALE + pictures.SCALE_BAR)
    assert image_size(folder / "weight_map.png") == ("PNG", weight_size)
    fmt, (grid_width, _) = image_size(folder / "misclassified.png")
    assert fmt == "PNG" and grid_width == pictures.GRID_COLUMNS * (28 * pictures.TILE_SCALE + 8) + 8
    accumulator = EventAccumulator(str(event_dir(run_dir)))
    accumulator.Reload()
    assert {"visuals/loss_curve", "visuals/weight_map", "visuals/misclassified"} <= set(
        accumulator.Tags()["images"]
    )
    weight_map = accumulator.Images("visuals/weight_map")[-1]
    assert (weight_map.width, weight_map.height) == weight_size


def test_the_config_tree_labels_each_group_with_its_option(tmp_path):
    train_here(tmp_path, "trainer.epochs=2", "loss=ce")
    tree = (tmp_path / "config_tree.txt").read_text()
    assert tree.startswith("config\n├── dataset (toy)\n")
    assert "├── loss (ce)\n│   ├── _target_: src.losses.CrossEntropy\n│   └── reduction: sum\n" in tree


def test_a_terminal_shows_live_progress_then_a_clean_summary(tmp_path):
    root = write_fake_dataset(tmp_path / "data")
    code, screen = launch("dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=400",
                          f"hydra.run.dir={tmp_path / 'run'}", terminal=True)  # fmt: skip
    assert code == 0, screen
    assert "epoch/s" in screen and "loss=" in screen and "val_acc=" in screen
    after_bar = screen.replace("\r\n", "\n").rsplit("\r", 1)[-1]  # the bar redraws with \r, then clears
    assert after_bar.lstrip().startswith("completed: 400 epochs")


def test_trainer_progress_false_draws_no_bar_even_in_a_terminal(tmp_path):
    code, screen = launch(
        "trainer.epochs=300", "trainer.progress=false", f"hydra.run.dir={tmp_path}", terminal=True
    )
    assert code == 0 and "epoch/s" not in screen

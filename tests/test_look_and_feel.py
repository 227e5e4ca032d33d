"""What a person sees: pictures in the run directory and TensorBoard, the progress bar in a terminal."""

import numpy as np
import pytest
from PIL import Image

from src import pictures
from tests.helpers import command, event_dir, train_here, write_fake_dataset


def image_size(path):
    with Image.open(path) as image:
        image.verify()  # a valid PNG, not just a file
    with Image.open(path) as image:
        return image.format, image.size


def test_nice_ticks_are_round_and_cover_the_range():
    assert pictures.nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert pictures.nice_ticks(3.2, 47.0) == [10.0, 20.0, 30.0, 40.0]


def test_weight_map_colours_positive_red_and_negative_blue_with_a_scale():
    weights = np.zeros((28, 28))
    weights[0, 0], weights[-1, -1] = 2.0, -2.0
    image = pictures.weight_map(weights, "8", "3")
    side = pictures.WEIGHT_SIDE
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
    weight_size = (pictures.WEIGHT_SIDE, pictures.WEIGHT_SIDE + pictures.SCALE_BAR)
    assert image_size(folder / "weight_map.png") == ("PNG", weight_size)
    fmt, (grid_width, _) = image_size(folder / "misclassified.png")
    assert fmt == "PNG" and grid_width == pictures.GRID_COLUMNS * (pictures.TILE_SIDE + 8) + 8
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
    assert (
        "├── loss (ce)\n│   ├── _target_: src.losses.CrossEntropy\n│   ├── reduction: sum\n"
        "│   ├── pos_weight: null\n│   └── class_weight: null\n"
    ) in tree


def test_a_terminal_shows_live_progress_then_a_clean_summary(tmp_path):
    root = write_fake_dataset(tmp_path / "data")
    code, screen = command("dataset=mnist_binary", f"dataset.root={root}", "trainer.epochs=400",
                                f"hydra.run.dir={tmp_path / 'run'}", terminal=True)  # fmt: skip
    assert code == 0, screen
    assert "epoch/s" in screen and "loss=" in screen and "val_acc=" in screen
    after_bar = screen.replace("\r\n", "\n").rsplit("\r", 1)[-1]  # the bar redraws with \r, then clears
    assert after_bar.lstrip().startswith("completed: 400 epochs")


@pytest.mark.slow  # a real process (or several): run by CI's make test-slow
def test_trainer_progress_false_draws_no_bar_even_in_a_terminal(tmp_path):
    code, screen = command(
        "trainer.epochs=300", "trainer.progress=false", f"hydra.run.dir={tmp_path}", terminal=True
    )
    assert code == 0 and "epoch/s" not in screen


def colours(image):
    return {colour for _, colour in image.getcolors(maxcolors=1 << 20)}


def test_confusion_matrix_colours_right_answers_green_and_mistakes_red():
    names = ("T-shirt", "trouser", "ankle boot")  # Fashion's names, the longest among them
    perfect = pictures.confusion_matrix(np.diag([5, 7, 9]), names)
    mixed = pictures.confusion_matrix(np.array([[5, 0, 0], [2, 5, 0], [0, 0, 9]]), names)
    assert perfect.size == mixed.size
    full_green, full_red = (0, 170, 0), (255, 0, 0)  # a whole row on one cell
    assert full_green in colours(perfect) and not any(r == 255 and g < 200 for r, g, _ in colours(perfect))
    assert any(r == 255 and 100 < g < 255 and g == b for r, g, b in colours(mixed))  # 2 of 7 went wrong
    assert full_red not in colours(mixed)


def test_weight_templates_are_one_labelled_map_per_class():
    weights = np.zeros((3, 28, 28))
    for k in range(3):
        weights[k, 0, k] = 1.0  # class k: one red pixel, its k-th
    image = pictures.weight_templates(weights, ["a", "b", "c"])
    tile, scale = pictures.TEMPLATE_SIDE, pictures.TEMPLATE_SIDE // 28
    assert image.width == 8 + 3 * (tile + 8)
    for k in range(3):
        x, y = 8 + k * (tile + 8), 40 + 26  # the tile's top-left, below the title and its label
        assert image.getpixel((x + k * scale + 1, y + 1)) == (255, 0, 0)
        assert image.getpixel((x + tile - 2, y + tile - 2)) == (255, 255, 255)


def test_mistakes_grid_widens_its_cells_for_long_class_names():
    images = np.zeros((2, 1, 28, 28))
    short = pictures.mistakes_grid(
        images, np.array([0, 1]), np.array([1, 0]), np.array([0.6, 0.7]), ("3", "8")
    )
    long = pictures.mistakes_grid(images, np.array([0, 1]), np.array([1, 0]), np.array([0.6, 0.7]),
                                  ("ankle boot", "T-shirt"))  # fmt: skip
    assert short.width == pictures.GRID_COLUMNS * (pictures.TILE_SIDE + 8) + 8
    assert long.width > short.width


def test_a_ten_class_run_draws_its_confusion_matrix_templates_and_mistakes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = write_fake_dataset(tmp_path / "data")
    run_dir = tmp_path / "run"
    train_here(run_dir, "dataset=mnist", f"dataset.root={root}", "trainer.epochs=1", "optimizer.lr=0.0001")
    folder = run_dir / "pictures"
    names = {"loss_curve", "weight_map", "confusion_matrix", "misclassified"}
    assert {path.stem for path in folder.glob("*.png")} == names
    tile = pictures.TEMPLATE_SIDE
    assert image_size(folder / "weight_map.png") == ("PNG", (8 + 5 * (tile + 8), 40 + 2 * (tile + 34)))
    accumulator = EventAccumulator(str(event_dir(run_dir)))
    accumulator.Reload()
    assert {f"visuals/{name}" for name in names} <= set(accumulator.Tags()["images"])


def test_a_long_title_wraps_onto_two_lines_before_anything_is_cut():
    from src.pictures import CHART_SIZE, title_lines

    width = CHART_SIZE[0]
    title = "loss per epoch: optimizer.lr=0.03 optimizer.weight_decay=0.001 scheduler=cosine"
    size, lines = title_lines(title, width)
    assert size == 18 and len(lines) == 2 and lines[1].endswith("scheduler=cosine")  # the end stays
    assert title_lines("loss per epoch", width) == (24, ["loss per epoch"])


def test_a_two_class_confusion_matrix_is_wide_enough_for_its_title():
    from PIL import ImageDraw

    from src.pictures import confusion_matrix, font

    image = confusion_matrix(np.array([[5, 1], [2, 7]]), ["3", "8"])
    title = "confusion matrix: true (row) by predicted (column)"
    assert image.width >= ImageDraw.Draw(image).textlength(title, font=font(20)) + 8


def test_the_reliability_diagram_draws_the_calibration_bins_beside_the_diagonal():
    import torch

    from src.report import reliability_diagram
    from src.scores import calibration_bins, expected_calibration_error

    generator = torch.Generator().manual_seed(0)
    positive = torch.rand(400, generator=generator, dtype=torch.float64)
    labels = (torch.rand(400, generator=generator, dtype=torch.float64) < positive**2).long()  # overconfident
    image = reliability_diagram(torch.stack([1 - positive, positive], dim=1), labels)
    assert image.size == (pictures.CHART_SIZE[0], pictures.CHART_SIZE[1] + 2 * pictures.LEGEND_ROW + 10)
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    for colour in pictures.COLORS[:2]:  # the model's bins and the diagonal are both drawn
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).max(axis=1) <= 2).sum() > 200
    truth = (labels == 1).double()
    assert len(calibration_bins(positive, truth)) == 15 and expected_calibration_error(positive, truth) > 0.05

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from src import data
from src.data import ImageFamily, load_images, load_toy
from src.errors import DataError
from src.idx import read_idx, write_idx
from tests.helpers import write_fake_dataset

PAIR = dict(family="mnist", classes=[3, 8], val_fraction=0.2, download=False, mean=0.5, std=0.25)


def test_toy_set_is_the_tutorials():
    toy = load_toy([1.0, 2.0, 3.0], [0, 0, 1], [4.0])
    assert toy.train.inputs.tolist() == [[1.0], [2.0], [3.0]]
    assert toy.train.labels.tolist() == [0, 0, 1]
    assert toy.val is None
    assert toy.test.inputs.tolist() == [[4.0]] and toy.test.labels is None
    assert toy.num_features == 1 and toy.num_classes == 2


def test_image_pair_keeps_two_classes_second_is_positive(fake_mnist_root):
    pair = load_images(root=str(fake_mnist_root), seed=0, **PAIR)
    # 300 training images cycle through 10 labels: 30 threes and 30 eights; 20% go to validation.
    assert (len(pair.train), len(pair.val), len(pair.test)) == (48, 12, 20)
    assert pair.num_features == 28 * 28 and pair.class_names == ("3", "8")
    band_of_eights = pair.test.inputs[:, 16 * 28 : 18 * 28].mean(dim=1) > 0
    assert torch.equal(band_of_eights.long(), pair.test.labels)  # label 1 exactly where the 8-band is
    assert pair.test.labels.sum().item() == 10


def test_pixels_are_scaled_then_normalized(tmp_path):
    root = write_fake_dataset(tmp_path)
    pair = load_images(root=str(root), seed=0, **PAIR)
    # A pixel of 220 in the band becomes (220/255 - mean) / std.
    expected = (220 / 255 - PAIR["mean"]) / PAIR["std"]
    assert pair.test.inputs.max().item() == pytest.approx(expected, abs=1e-6)
    assert pair.train.inputs.dtype == torch.float32


@pytest.mark.parametrize("gz", [True, False])
def test_torchvision_layout_and_flat_layout_load_the_same(tmp_path, gz):
    flat = write_fake_dataset(tmp_path / "flat", gz=gz)
    nested = tmp_path / "tv"
    shutil.copytree(flat, nested / "MNIST" / "raw")
    a = load_images(root=str(flat), seed=1, **PAIR)
    b = load_images(root=str(nested), seed=1, **PAIR)
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.test.labels, b.test.labels)


def test_validation_split_follows_the_seed(fake_mnist_root):
    first = load_images(root=str(fake_mnist_root), seed=0, **PAIR)
    again = load_images(root=str(fake_mnist_root), seed=0, **PAIR)
    other = load_images(root=str(fake_mnist_root), seed=1, **PAIR)
    assert torch.equal(first.val.inputs, again.val.inputs)
    assert not torch.equal(first.val.inputs, other.val.inputs)
    # Train and validation partition the training images: nothing lost, nothing shared.
    assert len(first.train) + len(first.val) == len(other.train) + len(other.val) == 60


def test_zero_val_fraction_means_no_validation_split(fake_mnist_root):
    pair = load_images(root=str(fake_mnist_root), seed=0, **{**PAIR, "val_fraction": 0.0})
    assert pair.val is None and len(pair.train) == 60


def test_missing_files_name_the_folder_and_files(tmp_path):
    with pytest.raises(DataError) as error:
        load_images(root=str(tmp_path), seed=0, **PAIR)
    message = str(error.value)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message
    assert "t10k-labels-idx1-ubyte" in message and "dataset.root" in message


def test_failed_download_says_so_clearly(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="could not download mnist into .*MNIST/raw.*Error downloading"):
        load_images(root=str(tmp_path), seed=0, **{**PAIR, "download": True})


def test_images_and_labels_of_different_lengths_are_refused(tmp_path):
    root = write_fake_dataset(tmp_path)
    shutil.copy(write_fake_dataset(tmp_path / "small", train_count=50) / "train-labels-idx1-ubyte.gz", root)
    with pytest.raises(DataError, match="300 images but .*train-labels-idx1-ubyte.gz has 50 labels"):
        load_images(root=str(root), seed=0, **PAIR)


def test_fashion_mnist_defaults_to_debians_folder_when_installed(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path)
    assert data.default_root(ImageFamily.fashion_mnist) == tmp_path
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    assert data.default_root(ImageFamily.fashion_mnist).name == "data"
    assert data.default_root(ImageFamily.mnist).name == "data"


def test_all_ten_classes_or_any_subset_labelled_by_position(fake_mnist_root):
    ten = load_images(root=str(fake_mnist_root), seed=0, **{**PAIR, "classes": list(range(10))})
    assert (len(ten.train) + len(ten.val), len(ten.test), ten.num_classes) == (300, 100, 10)
    bands = ten.test.inputs.view(-1, 28, 28)[:, ::2, :].mean(dim=2).argmax(dim=1)  # the bright band's row
    assert torch.equal(bands, ten.test.labels)
    subset = load_images(root=str(fake_mnist_root), seed=0, **{**PAIR, "classes": [9, 0, 4]})
    assert subset.class_names == ("9", "0", "4") and len(subset.test) == 30
    band_rows = subset.test.inputs.view(-1, 28, 28)[:, ::2, :].mean(dim=2).argmax(dim=1)
    assert torch.equal(torch.tensor([9, 0, 4])[subset.test.labels], band_rows)  # label i is classes[i]


def test_fashion_classes_are_named(tmp_path):
    root = write_fake_dataset(tmp_path)
    data = load_images(root=str(root), seed=0, **{**PAIR, "family": "fashion_mnist", "classes": [9, 0]})
    assert data.class_names == ("ankle boot", "T-shirt")


def test_a_class_missing_from_the_files_is_named(tmp_path):
    root = write_fake_dataset(tmp_path, test_count=7)  # the test labels stop at 6
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz has no examples of class 7, 9"):
        load_images(root=str(root), seed=0, **{**PAIR, "classes": [7, 1, 9]})


@pytest.mark.parametrize("bad_label,dtype", [(200, np.uint8), (-1, np.int8)])
def test_labels_outside_the_ten_classes_are_refused_naming_the_file(tmp_path, bad_label, dtype):
    root = write_fake_dataset(tmp_path, gz=False)
    labels = read_idx(root / "train-labels-idx1-ubyte").astype(dtype)
    labels[::7] = bad_label  # every 7th, as a damaged file might hold
    write_idx(root / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DataError, match=f"train-labels-idx1-ubyte holds label {bad_label} at position 0 "
                                        r"\(43 labels outside 0-9\); replace the file"):  # fmt: skip
        load_images(root=str(root), seed=0, **PAIR)


def test_empty_images_and_train_and_test_of_different_sizes_are_the_users_data(tmp_path):
    root = write_fake_dataset(tmp_path, gz=False)
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((100, 14, 14), dtype=np.uint8))
    with pytest.raises(DataError, match="train-images-idx3-ubyte holds 28x28 images but .*t10k-images-idx3-"
                                        "ubyte 14x14; the files come from different sets"):  # fmt: skip
        load_images(root=str(root), seed=0, **PAIR)
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((100, 0, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte holds images of size 0x28; replace it"):
        load_images(root=str(root), seed=0, **PAIR)


def test_a_download_without_internet_says_why_whole_and_leaves_no_empty_folders(tmp_path, monkeypatch):
    def offline(root, train, download):  # what torchvision does without a connection
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://ossci-datasets.s3.amazonaws.com/"
            "mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\nTried http://yann.lecun."
            "com/exdb/mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\n"
        )

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    root = tmp_path / "data"
    with pytest.raises(DataError) as refused:
        load_images(root=str(root), seed=0, **{**PAIR, "download": True})
    assert str(refused.value).startswith(
        f"could not download mnist into {root / 'MNIST' / 'raw'} (Error downloading train-images-idx3-ubyte"
        ".gz: <urlopen error [Errno -2] Name or service not known>: no connection to the download servers)"
    )
    assert not root.exists()  # nothing left behind that looks like data


def test_a_symlink_loop_as_the_data_folder_is_the_users_to_fix(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(DataError, match=r"dataset.root=.*a cannot be read \(Symlink loop"):
        load_images(root=str(tmp_path / "a"), seed=0, **PAIR)


def test_the_folder_a_null_root_meant_is_said(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", write_fake_dataset(tmp_path / "debian"))
    with caplog.at_level("INFO", logger="src.data"):
        load_images(root=None, seed=0, **{**PAIR, "family": "fashion_mnist"})
    assert f"dataset.root=null: fashion_mnist from {tmp_path / 'debian'}" in caplog.text

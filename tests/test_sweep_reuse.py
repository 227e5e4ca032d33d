"""What the jobs of one process share: each data file is read once, and no run can change another's data."""

import os

import numpy as np
import pytest
import torch

from src import idx
from src.data import load_images
from src.idx import read_idx_cached, write_idx
from tests.helpers import write_fake_dataset

PAIR = dict(family="mnist", classes=[3, 8], val_fraction=0.2, download=False, mean=0.5, std=0.25)


@pytest.fixture
def reads(monkeypatch):
    """The files read from disk, in order, with an empty cache."""
    idx.clear_cache()
    read, paths = idx.read_idx, []

    def counting(path):
        paths.append(path.name)
        return read(path)

    monkeypatch.setattr(idx, "read_idx", counting)
    return paths


def fresh_load(**settings):
    """The dataset as a process that has read nothing yet would load it (leaving nothing read)."""
    idx.clear_cache()
    try:
        return load_images(**settings)
    finally:
        idx.clear_cache()


def test_jobs_with_any_settings_read_each_file_once_and_get_what_a_fresh_load_gives(tmp_path, reads):
    root = str(write_fake_dataset(tmp_path))
    settings = [dict(PAIR, seed=0), dict(PAIR, seed=1), dict(PAIR, seed=0, classes=[1, 7]),
                dict(PAIR, seed=0, val_fraction=0.5), dict(PAIR, seed=0, mean=0.1)]  # fmt: skip
    alone = [fresh_load(root=root, **setting) for setting in settings]
    reads.clear()
    for setting, expected in zip(settings, alone, strict=True):
        shared = load_images(root=root, **setting)
        for split in ("train", "val", "test"):
            assert torch.equal(getattr(shared, split).inputs, getattr(expected, split).inputs)
            assert torch.equal(getattr(shared, split).labels, getattr(expected, split).labels)
    assert len(reads) == 4  # the four files, once, for every setting


def test_a_run_that_changes_its_data_does_not_change_the_next_runs(tmp_path, reads):
    root = str(write_fake_dataset(tmp_path))
    expected = fresh_load(root=root, seed=0, **PAIR)
    reads.clear()
    first = load_images(root=root, seed=0, **PAIR)
    for split in (first.train, first.val, first.test):
        split.inputs.add_(1.0)
        split.labels.zero_()
    second = load_images(root=root, seed=0, **PAIR)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(second, split).inputs, getattr(expected, split).inputs)
        assert torch.equal(getattr(second, split).labels, getattr(expected, split).labels)
    assert len(reads) == 4


def test_cached_arrays_are_read_only(tmp_path, reads):
    path = tmp_path / "labels"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    array = read_idx_cached(path)
    with pytest.raises(ValueError):
        array[0] = 9
    with pytest.raises(ValueError):
        array.flags.writeable = True
    assert read_idx_cached(path).tolist() == [1, 2, 3]


def test_a_rewritten_or_replaced_file_is_read_again(tmp_path, reads):
    path = tmp_path / "labels.gz"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    assert read_idx_cached(path).tolist() == [1, 2, 3]
    write_idx(path, np.array([4, 5, 6], dtype=np.uint8))  # same size: the times tell it apart
    os.utime(path, ns=(1, 1))  # even with the old modification time put back: its change time moved
    assert read_idx_cached(path).tolist() == [4, 5, 6]
    other = tmp_path / "other.gz"
    write_idx(other, np.array([7, 8, 9], dtype=np.uint8))
    other.replace(path)  # another file under the same name
    assert read_idx_cached(path).tolist() == [7, 8, 9]
    assert len(reads) == 3


def test_the_cache_is_bounded_least_recently_used_first(tmp_path, reads, monkeypatch):
    monkeypatch.setattr(idx, "CACHE_BYTES", 250)
    paths = []
    for name in "abc":
        paths.append(tmp_path / name)
        write_idx(paths[-1], np.zeros(100, dtype=np.uint8))
    a, b, c = paths
    read_idx_cached(a), read_idx_cached(b), read_idx_cached(a), read_idx_cached(c)  # b is dropped
    assert reads == ["a", "b", "c"]
    read_idx_cached(a), read_idx_cached(c), read_idx_cached(b)
    assert reads == ["a", "b", "c", "b"]
    big = tmp_path / "big"
    write_idx(big, np.zeros(300, dtype=np.uint8))
    read_idx_cached(big), read_idx_cached(big)  # larger than the whole cache: never kept
    assert reads[-2:] == ["big", "big"]
    assert idx.cached_bytes() <= 250


def test_one_reset_empties_every_cache_of_the_process(tmp_path, reads):
    from src import caches, sweep

    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([1, 2, 3], dtype=np.uint8))
    (tmp_path / "sweep.yaml").write_text("overrides: [optimizer.lr=0.1]\n")
    read_idx_cached(path)
    assert sweep.sweep_overrides(tmp_path) == ["optimizer.lr=0.1"]
    assert idx.cached_bytes() == 3 and sweep.load_record.cache_info().currsize == 1
    caches.clear()
    assert idx.cached_bytes() == 0 and sweep.load_record.cache_info().currsize == 0
    read_idx_cached(path)
    assert reads == [path.name, path.name]  # read from disk again

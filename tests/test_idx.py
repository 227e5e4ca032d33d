import gzip

import numpy as np
import pytest

from src.errors import DataError
from src.idx import read_idx, write_idx


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_round_trip_plain_and_gzipped(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_header_matches_the_official_format(tmp_path):
    write_idx(tmp_path / "labels", np.array([7, 2, 1], dtype=np.uint8))
    raw = (tmp_path / "labels").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 1])  # magic 2049, as in train-labels-idx1-ubyte
    assert int.from_bytes(raw[4:8], "big") == 3
    assert raw[8:] == bytes([7, 2, 1])


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        read_idx(path)


def test_wrong_magic_number_is_named(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + bytes(8)))
    with pytest.raises(DataError, match="labels.gz is not an IDX file"):
        read_idx(path)


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="cannot read .*labels.gz"):
        read_idx(path)


def test_a_damaged_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(path, np.arange(100, dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[20:30] = b"\xff" * 10  # inside the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"cannot read {path}"):
        read_idx(path)

"""Read and write IDX files, the format of MNIST and Fashion-MNIST (plain or gzipped).

Format: two zero bytes, a type code, the number of dimensions, then one big-endian uint32 per dimension,
then the values. http://yann.lecun.com/exdb/mnist/ describes it.
"""

import gzip
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from src.errors import DataError

_DTYPES: dict[int, str | type] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file; DataError naming the file if it is malformed."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"cannot read {path}: {error}; replace the file with a good copy") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (wrong magic number); replace it")
    dtype, ndim = np.dtype(_DTYPES[raw[2]]), raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path} is truncated inside its header; replace it")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header promises {expected} "
            "(truncated or corrupt); replace it"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)


# Files read in this process, by version: the jobs of a sweep that run in one process (or in one of
# joblib's workers, which run several) each load their dataset, and would otherwise read and unzip the
# same files every time. The arrays are read-only views of immutable bytes: no run can change them.
CACHE_BYTES = 512 * 2**20  # past this, the least recently used files are dropped
_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def read_idx_cached(path: Path) -> np.ndarray:
    """`read_idx`, read once per version of the file in this process (a version: its path, inode, size,
    and modification and change times, so a file replaced or rewritten is read again)."""
    try:
        stat = path.stat()
    except OSError:
        return read_idx(path)  # says what is wrong with it
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    array = read_idx(path)
    if array.nbytes <= CACHE_BYTES:
        with _cache_lock:
            _cache[key] = array
            while sum(cached.nbytes for cached in _cache.values()) > CACHE_BYTES:  # (lock held)
                _cache.popitem(last=False)
    return array


def clear_cache() -> None:
    """Forget every file read so far (src/caches.py)."""
    with _cache_lock:
        _cache.clear()


def cached_bytes() -> int:
    """The size of the arrays the cache holds."""
    with _cache_lock:
        return sum(cached.nbytes for cached in _cache.values())


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8/int8 array as an IDX file, gzipped when the name ends in .gz."""
    array = np.ascontiguousarray(array)
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)

"""A TensorBoard event file written in batches, so that logging a scalar every epoch costs little.

torch's SummaryWriter builds a protobuf per scalar while training runs and hands it to a background
thread, about 50 us per scalar here: a quarter of a toy-set epoch. This writer notes (tag, value, step)
and builds, checksums and writes the events when `flush` is called (the run does so at each checkpoint
and at the end) or once FLUSH_SECONDS have passed, so TensorBoard still follows a long run live.
Records use TensorBoard's framing (TFRecord) with google-crc32c's C checksum instead of TensorBoard's
pure-Python one, which alone cost 20 us per record (it is the fallback where google-crc32c is missing).

Every use of TensorBoard's formats in the project lives here: scalars, text, images, HParams, and
reading scalars back.
"""

import itertools
import os
import socket
import struct
import time
from pathlib import Path

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary

try:
    from google_crc32c import value as crc32c
except ImportError:  # a slower checksum, the same bytes
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c  # type: ignore[no-redef]

FLUSH_SECONDS = 5.0
_file_numbers = itertools.count()  # two writers in one process and second still get two files


def masked_crc32c(data: bytes) -> int:
    """The checksum TFRecord stores: CRC-32C, rotated and offset (TensorFlow's `MaskedCrc`)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One record: length (uint64), its masked CRC, the data, the data's masked CRC; little-endian."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Appends events to a new `events.out.tfevents.*` file in `folder`."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{next(_file_numbers)}"
        self.path = folder / f"events.out.tfevents.{stamp}"
        self._file = self.path.open("ab")
        self._pending: list[Event | tuple[str, float, int, float]] = []
        self._last_flush = time.monotonic()
        self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step:
            # TensorBoard drops the events of earlier files at steps >= purge_step: a resumed run
            # shows one curve, without the steps logged after its checkpoint.
            self._add(
                Event(step=purge_step, wall_time=time.time(), session_log=SessionLog(status=SessionLog.START))
            )
        self.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        # A tuple now, a protobuf at flush: building protobufs between training steps measured 6x
        # slower than building the same ones together afterwards.
        self._add((tag, value, step, time.time()))

    def summary(self, summary: Summary, step: int = 0) -> None:
        self._add(Event(step=step, wall_time=time.time(), summary=summary))

    def text(self, tag: str, markdown: str) -> None:
        """Text for TensorBoard's Text tab."""
        from torch.utils.tensorboard.summary import text

        self.summary(text(tag, markdown))

    def image(self, tag: str, png: bytes, width: int, height: int, step: int) -> None:
        """A PNG for TensorBoard's Images tab."""
        encoded = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=png)
        self.summary(Summary(value=[Summary.Value(tag=tag, image=encoded)]), step)

    def hparams(
        self, hyperparameters: dict[str, int | float | str | bool], metrics: dict[str, float]
    ) -> None:
        """A run's settings beside its final metrics, for TensorBoard's HParams tab (which reads the
        metrics' values from the scalars themselves)."""
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(hyperparameters, metrics):
            self.summary(summary)

    def _add(self, event: Event | tuple[str, float, int, float]) -> None:
        self._pending.append(event)
        if time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        records = []
        for item in self._pending:
            if isinstance(item, tuple):
                tag, value, step, wall_time = item
                summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
                item = Event(step=step, wall_time=wall_time, summary=summary)
            records.append(tfrecord(item.SerializeToString()))
        self._file.write(b"".join(records))
        self._file.flush()
        self._pending.clear()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._file.close()


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar logged in one folder of event files, as {tag: [(step, value), ...]}, with
    TensorBoard's own reader (so purge steps are honoured as TensorBoard shows them)."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # It reports each file it finishes, and each purge of steps a resumed run logged again (as meant).
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }

"""TensorBoard's own readers, as `tensorboard --logdir` uses them, for tests of what it shows.

Two loaders: the Python one (`--load_fast=false`, also behind `--logdir_spec`: a plugin event
multiplexer behind a data provider) and the fast one (the Rust data server that `tensorboard` starts,
read through its gRPC data provider). Both give the same data-provider interface, which the HParams
plugin's own classes read to build the HParams tab.
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tensorboard.context import RequestContext

logging.getLogger("tensorboard").setLevel(logging.WARNING)
CONTEXT = RequestContext()


def python_loader(logdir: Path) -> Any:
    """The data provider of `tensorboard --load_fast=false --logdir LOGDIR`, loaded once."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer(size_guidance={"scalars": 0, "tensors": 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return data_provider.MultiplexerDataProvider(multiplexer, str(logdir))


@contextlib.contextmanager
def fast_loader(logdir: Path, ready: Callable[[Any], bool]) -> Iterator[Any]:
    """The data provider of `tensorboard --load_fast=true --logdir LOGDIR` (its Rust data server, which
    reads the folder once, in the background), once `ready(provider)` says it has read what the test
    needs (or after a minute, and then the test's own checks fail)."""
    from tensorboard.data import server_ingester
    from tensorboard.util import grpc_util

    ingester = server_ingester.SubprocessServerDataIngester(
        server_ingester.get_server_binary(), str(logdir), reload_interval=0,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL, samples_per_plugin={"scalars": 0},
    )  # fmt: skip
    ingester.start()
    try:
        provider = ingester.data_provider
        deadline = time.monotonic() + 60
        while not ready(provider) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield provider
    finally:
        ingester._stdin_handle.close()  # the server was started with --die-after-stdin


def scalars(provider: Any, run: str, tag: str) -> list[tuple[int, float]]:
    """Every (step, value) of one scalar as TensorBoard shows it."""
    read = provider.read_scalars(
        CONTEXT, experiment_id="", plugin_name="scalars", downsample=10**9,
        run_tag_filter=_filter(run, tag),
    )  # fmt: skip
    return [(point.step, point.value) for point in read.get(run, {}).get(tag, [])]


def _filter(run: str, tag: str) -> Any:
    from tensorboard.data import provider

    return provider.RunTagFilter(runs=[run], tags=[tag])


def hparams(provider: Any, logdir: Path) -> tuple[Any, list[Any]]:
    """What the HParams tab shows: the experiment (columns) and the session groups (rows), from the
    HParams plugin's own request handlers."""
    from tensorboard.plugins.base_plugin import TBContext
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    context = backend_context.Context(TBContext(logdir=str(logdir), data_provider=provider))
    experiment = get_experiment.Handler(
        CONTEXT, context, "", api_pb2.GetExperimentRequest(include_metrics=True)
    ).run()
    columns = [api_pb2.ColParams(hparam=info.name) for info in experiment.hparam_infos]
    request = api_pb2.ListSessionGroupsRequest(
        col_params=columns, allowed_statuses=list(api_pb2.Status.values()), start_index=0, slice_size=1000
    )
    groups = list_session_groups.Handler(CONTEXT, context, "", request).run().session_groups
    return experiment, list(groups)

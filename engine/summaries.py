"""TensorBoard scalars written with TensorFlow's core summary op.

`tf.summary.scalar` lives in the `tensorboard` package, which TensorFlow 2.21 no longer installs. The event files
written here carry the same "scalars" plugin metadata, so TensorBoard (installed wherever the logs are viewed)
shows them as ordinary scalar charts.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()


def scalar(name: str, value, step: int) -> None:
    """Write `value` as scalar `name` at `step` to the default summary writer."""
    tf.summary.write(name, tf.cast(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def read_scalars(event_dir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalars of the event files in `event_dir`: {name: [(step, value), ...]} (for tests and reports)."""
    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(tf.io.gfile.glob(f"{event_dir}/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                    found.setdefault(value.tag, []).append((int(event.step), number))
    return found

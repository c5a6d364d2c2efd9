"""The tf.distribute strategy chosen by the `--strategy` flag (tested on a CPU split into two logical devices).

- `one_device`: the first GPU, else the CPU.
- `mirrored`: synchronous data parallelism over every visible GPU of this machine (the KVM-MN paper trained on
  two). Without a GPU it mirrors over the logical CPU devices when the CPU has been split into several (the tests
  do this in tests/conftest.py), else over the one CPU.
- `multi_worker`: MultiWorkerMirroredStrategy over the machines named in the `TF_CONFIG` environment variable;
  create it at program start, before any other TensorFlow op runs.

Every replica receives `global_batch / num_replicas_in_sync` examples. Batch normalisation computes its statistics
per replica unless the layer is built as `keras.layers.BatchNormalization(synchronized=True)` (or switched by
`use_cross_replica_batchnorm`), which all-reduces them across replicas so that a mirrored step equals a
single-device step on the global batch; a loss that compares examples with each other (batch-hard mining) sees the
global batch through `global_batch`.
"""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf
from absl import logging

STRATEGIES = ("one_device", "mirrored", "multi_worker")


class StrategyError(ValueError):
    """The requested strategy cannot be built here; the message says why and what to set."""


def _device_names(device_type: str) -> list[str]:
    return [d.name for d in tf.config.list_logical_devices(device_type)]


def parse_tf_config(raw: str | None = None) -> dict:
    """Read and check `TF_CONFIG` (or `raw`): `{"cluster": {"worker": [...], ...}, "task": {"type", "index"}}`.

    Raises StrategyError naming the missing or malformed field.
    """
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    if not raw:
        raise StrategyError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. TF_CONFIG='{\"cluster\": "
            "{\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise StrategyError(f"TF_CONFIG is not valid JSON ({err}): {raw!r}") from None
    if not isinstance(config, dict):
        raise StrategyError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster = config.get("cluster")
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyError("TF_CONFIG field 'cluster' is missing or empty: it maps job names to host:port lists")
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise StrategyError(f"TF_CONFIG field 'cluster.{job}' must be a non-empty list of 'host:port' strings, "
                                f"got {hosts!r}")
    if "worker" not in cluster and "chief" not in cluster:
        raise StrategyError("TF_CONFIG field 'cluster' needs a 'worker' (or 'chief') job")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise StrategyError("TF_CONFIG field 'task' must be an object with 'type' and 'index'")
    if task["type"] not in cluster:
        raise StrategyError(f"TF_CONFIG field 'task.type' is {task['type']!r}, not a job of 'cluster' "
                            f"({sorted(cluster)})")
    index = task["index"]
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise StrategyError(f"TF_CONFIG field 'task.index' is {index!r}, outside the {len(cluster[task['type']])} "
                            f"hosts of job {task['type']!r}")
    return config


_STRATEGIES_BUILT: dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str = "one_device") -> tf.distribute.Strategy:
    """The strategy `name` (one of STRATEGIES) over the devices visible to this process.

    A process gets one strategy object per name: collective ops of two MirroredStrategy objects over the same
    devices would share instance keys and abort each other (tests and notebooks build many models in one process).
    """
    if name not in _STRATEGIES_BUILT:
        _STRATEGIES_BUILT[name] = _build_strategy(name)
    return _STRATEGIES_BUILT[name]


def _build_strategy(name: str) -> tf.distribute.Strategy:
    if name == "one_device":
        gpus = _device_names("GPU")
        device = gpus[0] if gpus else _device_names("CPU")[0]
        strategy = tf.distribute.OneDeviceStrategy(device)
    elif name == "mirrored":
        devices = _device_names("GPU") or _device_names("CPU")
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    elif name == "multi_worker":
        parse_tf_config()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        raise StrategyError(f"unknown --strategy={name!r}; choose one of {', '.join(STRATEGIES)}")
    logging.info("strategy %s with %d replica(s)", name, strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, summaries and progress (worker 0 of a multi-worker cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy: tf.distribute.Strategy) -> int:
    """The task index of this process in a multi-worker cluster (0 otherwise)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None and resolver.task_id is not None else 0


def use_cross_replica_batchnorm(model: keras.Model) -> int:
    """Make every batch norm of `model` compute its statistics over all replicas; returns how many there are.

    Keras's `BatchNormalization` reads its `synchronized` attribute when called, so this switches layers built
    by others (nested backbones included) without rebuilding them. XLA (`jit_compile`) compiles each replica's step
    on its own and cannot run these cross-replica reductions.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


def global_batch(*tensors):
    """Inside `strategy.run` with several replicas: each of `tensors` (this replica's share of a batch) concatenated
    over all replicas in replica order, differentiably (the gradient reaching another replica's rows is summed
    back to that replica); with one replica, or outside a replica context, `tensors` themselves. Returns a tuple.

    For losses that compare each example with the whole batch (batch-hard triplet mining): computed on this
    replica's examples against `global_batch(...)`, the replicas' losses add up to the one-device loss.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors

    def gather(tensor):
        if tensor.dtype == tf.int32:  # TensorFlow keeps int32 on the host: MirroredStrategy's all_gather gave the
            # replica's own rows back, MultiWorkerMirroredStrategy's failed ("destinations can not be empty")
            return tf.cast(context.all_gather(tf.cast(tensor, tf.int64), axis=0), tf.int32)
        return context.all_gather(tensor, axis=0)

    return tuple(gather(tensor) for tensor in tensors)

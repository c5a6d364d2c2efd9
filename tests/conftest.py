"""Test-wide set-up: quiet TensorFlow, and the CPU split into two logical devices before TensorFlow starts, so
that tf.distribute tests can run two replicas on a CPU-only machine."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import data  # noqa: E402,F401  (TensorFlow's load-time defaults, as every package of ours sets them)


def _split_cpu():
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    except RuntimeError:  # already initialised by an earlier import in this process
        pass


_split_cpu()


@pytest.fixture(scope="session")
def shared_fixtures():
    """The read-only ../shared/fixtures folder (checked out beside the repository)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.normpath(os.path.join(here, "..", "..", "shared", "fixtures"))
    if not os.path.isdir(path):
        pytest.fail(f"shared fixtures not found at {path}: clone the repository beside ../shared")
    return path

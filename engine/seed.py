"""One seed for every random number generator a training run touches."""
from __future__ import annotations

import os
import random

import keras
import numpy as np
import tensorflow as tf


def set_seed(seed: int, deterministic_ops: bool = False) -> None:
    """Seed Python's `random`, NumPy's global generator, TensorFlow's global generator and Keras' seed generator.

    `deterministic_ops=True` also asks TensorFlow for deterministic kernels (slower on GPU; some ops then raise
    instead of running non-deterministically). Sampling code in this project takes explicit seeds and does not
    rely on these global generators; they cover layer initialisers and third-party code.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()

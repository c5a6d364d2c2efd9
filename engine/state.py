"""Python-side training state (sampler positions, mined tables, RNG states) saved inside tf.train.Checkpoint.

`ArrayState` is a `tf.train.experimental.PythonState`: passed to the training loop as an extra trackable it is
serialised into the same checkpoint as the model and optimizer, atomically, so a restored run sees the sampler
state that belongs to the restored step.
"""
from __future__ import annotations

import io

import numpy as np
import tensorflow as tf


class ArrayState(tf.train.experimental.PythonState):
    """A mutable dict of NumPy arrays (`state["name"] = array`) that checkpoints with the model.

    Example: a sampler keeps its mined hard-negative table in `state["negatives"]`; after `Trainer.restore()` the
    table of the restored step is back in `state["negatives"]`.
    """

    def __init__(self, **arrays):
        self.arrays = {name: np.asarray(value) for name, value in arrays.items()}

    def __getitem__(self, name):
        return self.arrays[name]

    def __setitem__(self, name, value):
        self.arrays[name] = np.asarray(value)

    def __contains__(self, name):
        return name in self.arrays

    def serialize(self):
        buffer = io.BytesIO()
        np.savez(buffer, **self.arrays)
        return buffer.getvalue()

    def deserialize(self, string_value):
        with np.load(io.BytesIO(string_value), allow_pickle=False) as data:
            self.arrays = {name: data[name] for name in data.files}

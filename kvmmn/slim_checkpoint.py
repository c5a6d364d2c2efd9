"""TF-slim variable names for Keras layers, and strict loading of TF-slim checkpoints (V1 and V2 formats).

TF-slim names a variable by its variable scope, e.g. `InceptionV1/Mixed_4f/Branch_1/Conv2d_0b_3x3/weights`.
Keras 3 forbids `/` in layer names, so a layer built for the scope `Mixed_4f/Branch_1/Conv2d_0b_3x3` is named
`Mixed_4f__Branch_1__Conv2d_0b_3x3` (`/` <-> `__`; TF-slim scopes never contain `__`, so the mapping is
reversible), and its batch norm `Mixed_4f__Branch_1__Conv2d_0b_3x3__BatchNorm`. A Keras variable's own name gives
the last part of the slim name: `kernel` -> `weights`, `bias` -> `biases`; batch-norm variables keep their names.

`load_slim_checkpoint` reads a checkpoint with `tf.train.load_checkpoint`, which understands both the V1 format
(a single `model.ckpt` file, as in the official `inception_v1_2016_08_28.tar.gz`) and the V2 format
(`model.ckpt.index` + `model.ckpt.data-*`: pass the prefix `model.ckpt`), or a training directory (its latest
checkpoint, as named by the directory's `checkpoint` state file).
"""
from __future__ import annotations

import collections
import dataclasses
import os

import keras
import numpy as np

SEPARATOR = "__"
DEFAULT_SCOPE = "InceptionV1"

# Keras variable name -> last component of the TF-slim variable name.
_SLIM_SUFFIX = {"kernel": "weights", "bias": "biases", "beta": "beta", "gamma": "gamma",
                "moving_mean": "moving_mean", "moving_variance": "moving_variance"}


class CheckpointMismatchError(ValueError):
    """The checkpoint lacks a variable the model needs, or holds it with another shape."""


@dataclasses.dataclass(frozen=True)
class LoadSummary:
    """What `load_slim_checkpoint` did: how many model variables it set, and which checkpoint variables it left
    (those of layers the model does not have, e.g. Mixed_5* and Logits for a Mixed_4f model, global_step,
    optimizer slots)."""
    path: str
    loaded: int
    skipped: tuple[str, ...]

    def __str__(self):
        # Grouped by the block under the network scope: a Mixed_4f model skips 51 variables in four groups.
        groups = collections.Counter(name.split("/")[1] if name.count("/") > 1 else name for name in self.skipped)
        detail = ", ".join(f"{group}: {count}" for group, count in sorted(groups.items()))
        return (f"loaded {self.loaded} variables from {self.path}; skipped {len(self.skipped)} checkpoint "
                f"variables the model does not have" + (f" ({detail})" if detail else ""))


def keras_name(slim_scope: str) -> str:
    """The Keras layer name for a TF-slim scope: `Mixed_4f/Branch_1/Conv2d_0b_3x3` -> `Mixed_4f__Branch_1__...`."""
    parts = slim_scope.split("/")
    if not all(parts) or any(SEPARATOR in p for p in parts):
        raise ValueError(f"cannot name a Keras layer reversibly after the TF-slim scope {slim_scope!r}: "
                         f"it has an empty component or contains {SEPARATOR!r}")
    return SEPARATOR.join(parts)


def slim_scope(layer_name: str) -> str:
    """The TF-slim scope of a Keras layer name, the inverse of `keras_name`."""
    return layer_name.replace(SEPARATOR, "/")


def slim_variable_map(model: keras.Model, scope: str = DEFAULT_SCOPE) -> dict[str, keras.Variable]:
    """Every variable of `model` under its TF-slim name (`<scope>/<layer scope>/<weights|biases|beta|...>`).

    Raises `ValueError` naming the layer and variable when a variable has no TF-slim counterpart, so that a model
    cannot be half covered by a checkpoint without anyone noticing.
    """
    names: dict[str, keras.Variable] = {}
    for layer in model.layers:
        for variable in layer.weights:
            suffix = _SLIM_SUFFIX.get(variable.name)
            if suffix is None:
                raise ValueError(f"layer {layer.name!r} has a variable {variable.name!r} with no TF-slim name")
            name = f"{scope}/{slim_scope(layer.name)}/{suffix}"
            if name in names:
                raise ValueError(f"two variables of the model map onto the TF-slim name {name!r}")
            names[name] = variable
    return names


def load_slim_checkpoint(model: keras.Model, path: str, scope: str = DEFAULT_SCOPE) -> LoadSummary:
    """Set every variable of `model` from the TF-slim checkpoint at `path`; strict and all-or-nothing.

    Every model variable must be in the checkpoint with its exact shape; otherwise `CheckpointMismatchError`
    names each missing or misshapen variable, and no variable of the model is changed. Checkpoint variables the
    model has no layer for are skipped and listed in the returned `LoadSummary`.
    """
    # Imported here, not at the top: only reading a TF checkpoint needs TensorFlow, and the model (with its
    # slim layer names) also runs on Keras's JAX and PyTorch backends, where TensorFlow may not be installed.
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
    except (ValueError, tf.errors.OpError) as e:
        raise FileNotFoundError(f"no readable TF checkpoint (V1 file, V2 prefix or directory) at {path!r}: "
                                f"{e}") from e
    available = reader.get_variable_to_shape_map()
    wanted = slim_variable_map(model, scope)
    problems = []
    for name, variable in wanted.items():
        if name not in available:
            problems.append(f"missing {name} {list(variable.shape)}")
        elif tuple(available[name]) != tuple(variable.shape):
            problems.append(f"wrong shape {name}: checkpoint {list(available[name])}, "
                            f"model {list(variable.shape)}")
    if problems:
        raise CheckpointMismatchError(f"checkpoint {path} does not fit model {model.name!r} "
                                      f"({len(problems)} problems):\n  " + "\n  ".join(problems))
    values = {name: reader.get_tensor(name) for name in wanted}
    for name, variable in wanted.items():
        variable.assign(np.asarray(values[name], dtype=variable.dtype))
    skipped = tuple(sorted(set(available) - set(wanted)))
    return LoadSummary(path=os.fspath(path), loaded=len(wanted), skipped=skipped)

"""Inference on any Keras 3 backend (TensorFlow, JAX, PyTorch), chosen by KERAS_BACKEND before Keras is imported.

Training, tf.data and tf.distribute are TensorFlow's; model inference, the kNN pass, the re-rankers and evaluation
run on every backend, and importing them never imports TensorFlow on JAX or PyTorch (tests/test_backends.py).
Their tensor code is `keras.ops`; what still differs between the backends is how a function is compiled, and this
module is the one place that knows it:

- TensorFlow: `tf.function` (shapes generalised after a retrace, so the last, smaller batch does not trace anew);
- JAX: `jax.jit` of a pure function that receives the model's variables as arguments and runs the model inside a
  `keras.StatelessScope` (what Keras's own JAX predict step does); the variables are read at every call, never
  baked into the compiled program, so a model whose weights change later is never run with stale ones;
- PyTorch: eager, under `torch.no_grad()` (inference builds no autograd graph: less memory, faster).
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras


def backend() -> str:
    """The active Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def compiled_inference(model: keras.Model, fn: Callable,
                       signature: Sequence[tuple[tuple[int | None, ...], str]] | None = None) -> Callable:
    """`fn(*arrays)`, which calls `model` (or its methods) in inference mode, compiled for the active backend.

    `fn` must take and return tensors (or nests of them) and must not change the model's variables.
    `signature`, one (shape, dtype) per argument with None for the sizes that vary: on TensorFlow, one trace then
    serves every call (without it, the second shape seen traces again before shapes are generalised). JAX compiles
    per shape whatever is given; PyTorch does not compile.
    """
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        if signature is not None:
            return tf.function(fn, input_signature=[tf.TensorSpec(shape, dtype) for shape, dtype in signature])
        return tf.function(fn, reduce_retracing=True)
    if name == "jax":
        import jax

        def pure(trainable, non_trainable, *arrays):
            mapping = list(zip(model.trainable_variables, trainable)) + list(zip(model.non_trainable_variables,
                                                                                  non_trainable))
            with keras.StatelessScope(state_mapping=mapping):
                return fn(*arrays)

        jitted = jax.jit(pure)
        return lambda *arrays: jitted([v.value for v in model.trainable_variables],
                                      [v.value for v in model.non_trainable_variables], *arrays)
    if name == "torch":
        import torch

        def no_grad(*arrays):
            with torch.no_grad():
                return fn(*arrays)

        return no_grad
    raise ValueError(f"unsupported Keras backend {name!r}: expected tensorflow, jax or torch")


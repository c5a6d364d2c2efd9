"""Mixed precision chosen by the `--mixed_precision` flag, and the loss scaling that float16 needs."""
from __future__ import annotations

import keras

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def set_policy(name: str) -> None:
    """Set Keras' global dtype policy; call before building the model.

    `mixed_float16` (GPUs with tensor cores) computes in float16 and keeps float32 variables; its small exponent
    range needs loss scaling (`wrap_optimizer`). `mixed_bfloat16` (recent GPUs, TPUs, CPUs with AVX512-BF16) keeps
    float32's range and needs none. Models should give their final outputs `dtype="float32"` so that losses are
    computed in float32.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown --mixed_precision={name!r}; choose one of {', '.join(POLICIES)}")
    keras.mixed_precision.set_global_policy(name)


def wrap_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Wrap `optimizer` in a dynamic LossScaleOptimizer when the global policy computes in float16."""
    if keras.mixed_precision.global_policy().compute_dtype == "float16" and not isinstance(
            optimizer, keras.mixed_precision.LossScaleOptimizer):
        return keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer

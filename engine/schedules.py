"""Learning-rate schedules the papers' recipes need and Keras lacks."""
from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="engine")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up in front of another schedule (or a constant rate).

    The rate at step t < warmup_steps is `after(t) * (warmup_factor + (1 - warmup_factor) * t / warmup_steps)`,
    rising linearly from `warmup_factor * after(0)` to `after(warmup_steps)`; from then on it is `after(t)`. This is
    the warm-up of the re-ID strong baseline (Luo et al. 2019, "Learning Rate Warm-Up"; ACP Sec. IV-B1) and of ACP's
    own training (ACP Sec. IV-B2: "warm-up over 10 epochs from factor 0.1").

    Args:
      after: a float or a LearningRateSchedule used after (and scaled during) the warm-up.
      warmup_steps: length of the warm-up in steps; 0 disables it.
      warmup_factor: the fraction of the rate used at step 0.
    """

    def __init__(self, after, warmup_steps: int, warmup_factor: float = 0.1):
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if not 0.0 <= warmup_factor <= 1.0:
            raise ValueError(f"warmup_factor must lie in [0, 1], got {warmup_factor}")
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = self.after(step) if callable(self.after) else tf.constant(self.after, tf.float32)
        if self.warmup_steps == 0:
            return rate
        progress = tf.minimum(step / float(self.warmup_steps), 1.0)
        return rate * (self.warmup_factor + (1.0 - self.warmup_factor) * progress)

    def get_config(self):
        after = (keras.optimizers.schedules.serialize(self.after)
                 if isinstance(self.after, keras.optimizers.schedules.LearningRateSchedule) else self.after)
        return {"after": after, "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.optimizers.schedules.deserialize(config["after"])
        return cls(**config)

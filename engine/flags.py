"""The absl flags every training binary shares, declared once by `define_common_flags()` at a binary's top.

    from engine import flags as engine_flags
    engine_flags.define_common_flags(max_steps=250_000, checkpoint_every=5_000)
    FLAGS = flags.FLAGS

    def main(argv):
        strategy = engine_flags.setup_from_flags()     # seeds, dtype policy, strategy
        config = engine_flags.loop_config_from_flags() # engine.train_loop.LoopConfig

Flags that several binaries share (--dataset, --data_root, --split via `define_dataset_flags`, or any other name
through `declare_once`) are declared once per process, so that binaries can be imported side by side.
"""
from __future__ import annotations

import sys

from absl import flags

from engine import distribute, precision, seed
from engine.train_loop import LoopConfig

FLAGS = flags.FLAGS

_DEFAULTS = dict(strategy="one_device", mixed_precision="float32", xla=False, seed=0, train_dir=None,
                 max_steps=1000, checkpoint_every=1000, log_every=100, keep_checkpoints=3)


def _calling_module(depth: int) -> str:
    name = sys._getframe(depth + 1).f_globals.get("__name__", "")
    # absl files the flags of the program being run under sys.argv[0]; --help lists that module's key flags
    return sys.argv[0] if name == "__main__" else name


def declare_once(define, name: str, default, help_text: str, *, module: str | None = None, **kwargs) -> None:
    """`define(name, default, help=help_text, **kwargs)` unless `name` is already declared, then make it a key
    flag of the calling module (so that binary's `--help` lists it).

    Binaries that share flag names (--dataset, --data_root, --output...) declare them through this, so that
    several binaries can be imported into one process (the test suite does) without DuplicateFlagError; the first
    declaration's default wins.
    """
    if name not in FLAGS:
        define(name, default, help=help_text, **kwargs)
    FLAGS.register_key_flag_for_module(module or _calling_module(1), FLAGS[name])


def define_common_flags(**defaults) -> None:
    """Declare --strategy, --mixed_precision, --xla, --seed, --train_dir, --max_steps, --checkpoint_every,
    --log_every and --keep_checkpoints with this binary's `defaults` (keyword per flag), via `declare_once`."""
    unknown = set(defaults) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"define_common_flags got unknown flag defaults: {sorted(unknown)}")
    values = {**_DEFAULTS, **defaults}
    module = _calling_module(1)

    def declare(name, define, help_text, **kwargs):
        declare_once(define, name, values[name], help_text, module=module, **kwargs)

    declare("strategy", flags.DEFINE_enum,
            "tf.distribute strategy: one_device (first GPU, else CPU), mirrored (every GPU of this machine), "
            "multi_worker (MultiWorkerMirroredStrategy over the hosts in TF_CONFIG).",
            enum_values=list(distribute.STRATEGIES))
    declare("mixed_precision", flags.DEFINE_enum,
            "Keras dtype policy: float32, mixed_float16 (GPUs; adds dynamic loss scaling) or mixed_bfloat16.",
            enum_values=list(precision.POLICIES))
    declare("xla", flags.DEFINE_bool, "Compile the per-replica training computation with XLA (jit_compile).")
    declare("seed", flags.DEFINE_integer, "Seed of every random generator (initialisers, samplers, augmentation).")
    declare("train_dir", flags.DEFINE_string,
            "Directory of checkpoints and TensorBoard summaries; a run restarted with the same directory resumes "
            "from its latest checkpoint.")
    declare("max_steps", flags.DEFINE_integer, "Number of training steps (optimizer updates).", lower_bound=0)
    declare("checkpoint_every", flags.DEFINE_integer, "Save a checkpoint every this many steps (and at the end).",
            lower_bound=1)
    declare("log_every", flags.DEFINE_integer, "Write TensorBoard scalars and a log line every this many steps.",
            lower_bound=1)
    declare("keep_checkpoints", flags.DEFINE_integer, "How many recent checkpoints to keep.", lower_bound=1)


def define_dataset_flags(dataset: str = "synthetic", data_root: str | None = None) -> None:
    """Declare --dataset, --data_root and --split (via `declare_once`), shared by every binary that reads data."""
    module = _calling_module(1)
    declare_once(flags.DEFINE_string, "dataset", dataset,
                 "Dataset registry name (data.datasets.names()): synthetic, market1501, dukemtmcreid, msmt17, "
                 "cuhk03_labeled, cuhk03_detected, cuhk01, veri776, vehicleid, veriwild.", module=module)
    declare_once(flags.DEFINE_string, "data_root", data_root,
                 "Root directory of the dataset in its own on-disk layout (the synthetic dataset is generated "
                 "there when absent).", module=module)
    declare_once(flags.DEFINE_string, "split", None,
                 "Evaluation split of datasets that have several (data.datasets.eval_splits); default: the "
                 "dataset's first.", module=module)


def setup_from_flags():
    """Seed everything, set the dtype policy and build the strategy named by the flags; returns the strategy.

    Call first in `main`: MultiWorkerMirroredStrategy must exist before other TensorFlow ops run.
    """
    strategy = distribute.make_strategy(FLAGS.strategy)
    seed.set_seed(FLAGS.seed)
    precision.set_policy(FLAGS.mixed_precision)
    return strategy


def loop_config_from_flags(**overrides) -> LoopConfig:
    """The LoopConfig the common flags describe; `overrides` replace fields (e.g. a max_steps derived from
    epochs). Raises flags.IllegalFlagValueError when --train_dir is missing."""
    if not FLAGS.train_dir:
        raise flags.IllegalFlagValueError("--train_dir is required: checkpoints and summaries are written there")
    fields = dict(train_dir=FLAGS.train_dir, max_steps=FLAGS.max_steps, checkpoint_every=FLAGS.checkpoint_every,
                  log_every=FLAGS.log_every, keep_checkpoints=FLAGS.keep_checkpoints, xla=FLAGS.xla)
    fields.update(overrides)
    return LoopConfig(**fields)

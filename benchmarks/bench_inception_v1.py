"""bench_inception_v1: forward speed of the Inception V1 backbone (KVM-MN's Mixed_4f at 224x112 by default), with
and without XLA.

Runs on the first visible GPU when there is one, else on the CPU, and writes
benchmarks/results/inception_v1.<cpu|gpu>.{json,md} with the device in the metadata:

    python -m benchmarks.bench_inception_v1 --batch_size=32 --height=224 --width=112
"""
import tensorflow as tf
from absl import flags

from benchmarks import harness
from engine import cli
from engine.progress import Progress
from kvmmn.inception_v1 import InceptionV1

FLAGS = cli.new_flags()  # this benchmark's own flags, never absl's global FLAGS
flags.DEFINE_integer("batch_size", 32, "Images per forward pass.", flag_values=FLAGS)
flags.DEFINE_integer("height", 224, "Input height.", flag_values=FLAGS)
flags.DEFINE_integer("width", 112, "Input width.", flag_values=FLAGS)
flags.DEFINE_string("final_endpoint", "Mixed_4f", "Last Inception V1 endpoint computed.", flag_values=FLAGS)
flags.DEFINE_list("modes", ["graph", "xla"], "tf.function without (graph) and with (xla) jit_compile.",
                  flag_values=FLAGS)
flags.DEFINE_integer("repeats", 3, "Timed forward passes per mode.", flag_values=FLAGS)
flags.DEFINE_integer("warmup", 1, "Untimed forward passes per mode before timing (tracing, XLA compilation).",
                     flag_values=FLAGS)
flags.DEFINE_string("out_dir", None, "Where results go; default benchmarks/results.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the random weights and images.", flag_values=FLAGS)

_JIT = {"graph": False, "xla": True}


def benchmark(batch_size, height, width, final_endpoint="Mixed_4f", modes=("graph", "xla"), repeats=3, warmup=1,
              seed=0):
    """Times `model(images, training=False)` per mode; returns (rows, device name)."""
    unknown = [m for m in modes if m not in _JIT]
    if unknown:
        raise ValueError(f"--modes: unknown {unknown}; choose from {', '.join(_JIT)}")
    gpus = tf.config.list_logical_devices("GPU")
    device = gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name
    rows = []
    progress = Progress(len(modes), unit="mode")
    with tf.device(device):
        model = InceptionV1(final_endpoint, input_shape=(height, width, 3), seed=seed)
        images = tf.random.stateless_uniform((batch_size, height, width, 3), (seed, 0), -1.0, 1.0)
        for mode in modes:
            forward = tf.function(lambda x: model(x, training=False), jit_compile=_JIT[mode])
            timing = harness.measure(lambda: forward(images).numpy(), repeats=repeats, warmup=warmup)
            rows.append({"mode": mode, "final_endpoint": final_endpoint, "batch_size": batch_size,
                         "input": f"{height}x{width}", "images_per_s": batch_size / timing["seconds_best"],
                         "images_per_s_mean": batch_size / timing["seconds_mean"], **timing})
            progress.add(1)
    return rows, device


def main(argv):
    del argv
    rows, device = benchmark(FLAGS.batch_size, FLAGS.height, FLAGS.width, FLAGS.final_endpoint, FLAGS.modes,
                             FLAGS.repeats, FLAGS.warmup, FLAGS.seed)
    kind = "gpu" if "GPU" in device.upper() else "cpu"
    paths = harness.write_results(f"inception_v1.{kind}", rows, meta={"device": device, "repeats": FLAGS.repeats,
                                                                       "warmup": FLAGS.warmup},
                                  title=f"Inception V1 forward speed ({kind.upper()})", out_dir=FLAGS.out_dir)
    for row in rows:
        print(f"{row['mode']:6s} {row['images_per_s']:9.1f} images/s (best of {FLAGS.repeats}) on {device}")
    print("wrote", *paths)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

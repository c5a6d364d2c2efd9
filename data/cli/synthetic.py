"""reid-synthetic: generate the synthetic re-ID dataset (Market-1501 layout) into a folder, without TensorFlow.

  reid-synthetic --root=/tmp/synthetic --num_identities=240 --seed=0     (or python -m data.cli.synthetic)

A root that already holds the same configuration, its images matching the manifest in its synthetic.json, is left as
it is; one generated with other parameters, or whose images were deleted, added or changed since, is replaced only
with --overwrite. Every other flag is a field of `data.synthetic.SyntheticConfig`, with its default.
"""
from absl import flags

from data.synthetic import generator
from engine import cli

FLAGS = cli.new_flags()
flags.DEFINE_string("root", None, "Dataset folder to write; default: a folder under ~/.cache named after the "
                    "parameters (data.synthetic.DEFAULT_ROOT for the defaults).", flag_values=FLAGS)
CONFIG = cli.define_config_flags(
    FLAGS, generator.SyntheticConfig,
    checks={"num_identities": cli.Check(min=2, max=9999), "num_cameras": cli.Check(min=1, max=9),
            "min_cameras": cli.Check(min=1, max=9), "min_images_per_camera": cli.Check(min=2),
            "max_images_per_camera": cli.Check(min=2), "queries_per_camera": cli.AT_LEAST_ONE,
            "group_size": cli.AT_LEAST_ONE, "num_distractors": cli.NON_NEGATIVE, "num_junk": cli.NON_NEGATIVE,
            "height": cli.Check(min=16), "width": cli.Check(min=8), "seed": cli.NON_NEGATIVE,
            "jpeg_quality": cli.Check(min=1, max=100)})
flags.DEFINE_boolean("overwrite", False, "Replace a root generated with other parameters, or whose images no longer "
                     "match its manifest.", flag_values=FLAGS)


def main(argv):
    del argv
    CONFIG.build()  # the dataclass checks how the fields go together (min_cameras <= num_cameras ...): one line
    root = generator.generate(FLAGS["root"].value, overwrite=FLAGS["overwrite"].value, progress=True,
                              **CONFIG.values())
    metadata = generator.read_metadata(root)
    print(f"synthetic dataset in {root}: {metadata['images']} images "
          f"({len(metadata['train_pids'])} train / {len(metadata['test_pids'])} test identities)")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

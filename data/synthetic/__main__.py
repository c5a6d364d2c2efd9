"""Generate the synthetic re-ID dataset (Market-1501 layout) into a folder.

  python -m data.synthetic --root=/tmp/synthetic --num_identities=240 --seed=0

A root that already holds the same configuration, its images matching the manifest in its synthetic.json, is left as
it is; one generated with other parameters, or whose images were deleted, added or changed since, is replaced only
with --overwrite.
"""
import dataclasses

from absl import app, flags

from data.synthetic import generator

_DEFAULTS = generator.SyntheticConfig()

flags.DEFINE_string("root", None, "Dataset folder to write; default: a folder under ~/.cache named after the "
                    "parameters (data.synthetic.DEFAULT_ROOT for the defaults).")
flags.DEFINE_integer("num_identities", _DEFAULTS.num_identities, "People with images (half train, half test).")
flags.DEFINE_integer("num_cameras", _DEFAULTS.num_cameras, "Cameras of the scene.")
flags.DEFINE_integer("min_cameras", _DEFAULTS.min_cameras, "Cameras that see each identity, at least.")
flags.DEFINE_integer("min_images_per_camera", _DEFAULTS.min_images_per_camera, "Images per identity and camera, "
                     "at least.")
flags.DEFINE_integer("max_images_per_camera", _DEFAULTS.max_images_per_camera, "Images per identity and camera, "
                     "at most.")
flags.DEFINE_integer("queries_per_camera", _DEFAULTS.queries_per_camera, "Queries per test identity and camera.")
flags.DEFINE_integer("group_size", _DEFAULTS.group_size, "Identities per look-alike group.")
flags.DEFINE_integer("num_distractors", _DEFAULTS.num_distractors, "Distractor gallery images (pid 0).")
flags.DEFINE_integer("num_junk", _DEFAULTS.num_junk, "Junk gallery images (pid -1).")
flags.DEFINE_integer("height", _DEFAULTS.height, "Image height in pixels.")
flags.DEFINE_integer("width", _DEFAULTS.width, "Image width in pixels.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of everything drawn.")
flags.DEFINE_integer("jpeg_quality", _DEFAULTS.jpeg_quality, "JPEG quality of the written images.")
flags.DEFINE_boolean("overwrite", False, "Replace a root generated with other parameters, or whose images no longer "
                     "match its manifest.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    params = {f.name: FLAGS[f.name].value for f in dataclasses.fields(generator.SyntheticConfig)}
    root = generator.generate(FLAGS.root, overwrite=FLAGS.overwrite, progress=True, **params)
    metadata = generator.read_metadata(root)
    print(f"synthetic dataset in {root}: {metadata['images']} images "
          f"({len(metadata['train_pids'])} train / {len(metadata['test_pids'])} test identities)")


def run():
    app.run(main)


if __name__ == "__main__":
    run()

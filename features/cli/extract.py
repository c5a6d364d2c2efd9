r"""acp-extract: the feature file (`features.feature_file` schema) of a trained baseline for a dataset's train, query
and gallery images.

    acp-extract --checkpoint=runs/baseline_market --dataset=market1501 --data_root=/data/Market-1501-v15.09.15 \
        --output=features/market1501.npz

Per image: the BNNeck embedding and the pooled C3/C4/C5 (f3, f4, f5), with pid, camid, split and path. Images are
embedded --chunk_size at a time into `<output>.parts/`; a killed run started again skips the chunks already on disk;
the chunks are then streamed into --output, so a 100K-image set never has all its features in memory.

Your own images, without labels or a dataset layout (`data.image_lists`: a folder of crops, one image or a .csv
list), instead of --dataset; their rows are unlabelled (search mode: `acp-rerank --top_list`):

    acp-extract --checkpoint=runs/baseline_market --query_images=people_to_find/ --gallery_images=crops/ \
        --output=features/crops.npz
"""
from __future__ import annotations

from absl import flags

from data import image_lists
from engine import cli
from features import feature_file, training
from features.extraction import extract

FLAGS = cli.new_flags()
cli.define_dataset_flags(FLAGS, strict_decoding=True)
flags.DEFINE_string("checkpoint", None, "Training directory of acp-baseline-train (its latest checkpoint) or one "
                    "checkpoint prefix (.../ckpt-N).", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Feature file to write (.npz).", flag_values=FLAGS)
flags.DEFINE_string("query_images", None, "Instead of --dataset: the query images, a folder (every image directly "
                    "inside), one image or a .csv list (header path[,pid,camid]); no labels needed.", flag_values=FLAGS)
flags.DEFINE_string("gallery_images", None, "Instead of --dataset: the gallery images, as --query_images.",
                    flag_values=FLAGS)
cli.define(FLAGS, "subsets", tuple[str, ...], tuple(feature_file.SPLIT_CODES),
           "Which of train, query, gallery to extract (comma list).")


def _check_subsets(subsets) -> None:
    unknown = [name for name in subsets if name not in feature_file.SPLIT_CODES] or ([] if subsets else ["none"])
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: choose from {', '.join(feature_file.SPLIT_CODES)}")


cli.validate(FLAGS, "subsets", _check_subsets)
flags.DEFINE_integer("batch_size", 64, "Images per forward pass.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("chunk_size", 4096, "Images per resumable chunk.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_bool("overwrite", False, "Discard the chunks of an earlier, different extraction.", flag_values=FLAGS)


def main(argv):
    del argv
    checkpoint = cli.require(FLAGS, "checkpoint", "an acp-baseline-train --train_dir or checkpoint prefix")
    output = cli.require(FLAGS, "output", "the feature file to write")
    cli.apply_strict_decoding(FLAGS)  # the image lists' images too
    images = {name: FLAGS[f"{name}_images"].value or "" for name in ("query", "gallery")}
    if any(images.values()):
        given = [f"--{name}" for name in ("dataset", "data_root", "split", "dataset_option") if FLAGS[name].present]
        if given:
            raise cli.UserError(f"--query_images / --gallery_images replace the dataset flags; drop {', '.join(given)}")
        record = image_lists.image_record(**images)  # reader errors before the model is built
    else:
        record = cli.load_dataset(FLAGS)
    model, config, path = training.restore_model(checkpoint)
    subsets = list(dict.fromkeys(FLAGS["subsets"].value))
    written = extract(model, config, record, output, checkpoint=path, subsets=subsets,
                      batch_size=FLAGS["batch_size"].value, chunk_size=FLAGS["chunk_size"].value,
                      overwrite=FLAGS["overwrite"].value)
    counts = {name: len(getattr(record, name)) for name in subsets}
    print(f"wrote {written}: {counts} images of {record.name or record.split}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

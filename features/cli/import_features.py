r"""acp-import-features: features from other toolkits into a feature file (`features.importers` reads them).

    acp-import-features --input=pytorch_result.mat --dataset=market1501 --protocol=market1501 \
        --output=features/market_imported.npz
    acp-import-features --query_features=q.npy --query_pids=q_pids.npy --query_camids=q_cams.txt \
        --gallery_features=g.npy --gallery_pids=g_pids.npy --gallery_camids=g_cams.txt \
        [--train_features=... --train_pids=... --train_camids=...] --dataset=market1501 --output=imported.npz

Query and gallery features without pids and camids are imported unlabelled (search mode, `acp-rerank`).
"""
from __future__ import annotations

from absl import flags

from data import datasets, evaluation
from engine import cli
from features.feature_file import FeatureSet, save_features
from features.importers import ARRAY_NAMES, import_arrays, import_mat, load_array

FLAGS = cli.new_flags()
flags.DEFINE_string("input", None, "A layumi-style pytorch_result.mat (MATLAB v5 or v7.3).", flag_values=FLAGS)
for _name in ARRAY_NAMES:
    flags.DEFINE_string(_name, None, f"Instead of --input: {_name.replace('_', ' ')} as .npy, .npz:KEY, .txt or .csv"
                        + (" (optional split)" if _name.startswith("train") else "") + ".", flag_values=FLAGS)
flags.DEFINE_string("dataset", "", "Dataset name recorded in the feature file; one of the registered datasets, or "
                    "empty.", flag_values=FLAGS)
flags.DEFINE_enum("protocol", "", ["", *evaluation.PROTOCOLS], "Evaluation protocol recorded in the feature file "
                  "(acp-rerank evaluates with it); empty: unknown (acp-rerank then uses market1501 and says so).",
                  flag_values=FLAGS)
flags.DEFINE_string("dataset_split", "", "Dataset split recorded in the feature file (e.g. 800/0), or empty.",
                    flag_values=FLAGS)


def _check_dataset(name: str) -> None:
    if name and name not in datasets.names():
        raise ValueError(f"unknown dataset; registered: {', '.join(datasets.names())}")


cli.validate(FLAGS, "dataset", _check_dataset)
flags.DEFINE_string("output", None, "Feature file to write (.npz).", flag_values=FLAGS)


def import_from_flags() -> FeatureSet:
    given = {name: FLAGS[name].value for name in ARRAY_NAMES if FLAGS[name].value}
    source = FLAGS["input"].value
    facts = {name: FLAGS[name].value for name in ("dataset", "protocol", "dataset_split")}
    if source and given:
        raise cli.UserError(f"give either --input or the array flags, not both (got --input and {sorted(given)})")
    if source:
        return import_mat(source, **facts)
    if not given:
        raise cli.UserError("give --input=pytorch_result.mat or --query_features, --gallery_features, ... arrays")
    arrays = {name: load_array(spec, f"--{name}") for name, spec in given.items()}
    return import_arrays(**arrays, **facts, origin=", ".join(sorted(set(given.values()))))


def main(argv):
    del argv
    output = cli.require(FLAGS, "output", "the feature file to write")
    imported = import_from_flags()
    written = save_features(output, imported)
    print(f"wrote {written}: {imported.summary()}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

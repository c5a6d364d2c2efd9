r"""acp-import-features: features from other toolkits into a feature file (`features.importers` reads them).

    acp-import-features --input=pytorch_result.mat --dataset=market1501 --output=features/market_imported.npz
    acp-import-features --query_features=q.npy --query_pids=q_pids.npy --query_camids=q_cams.txt \
        --gallery_features=g.npy --gallery_pids=g_pids.npy --gallery_camids=g_cams.txt \
        [--train_features=... --train_pids=... --train_camids=...] --dataset=market1501 --output=imported.npz
"""
from __future__ import annotations

from absl import app, flags

from engine.flags import declare_once
from features.feature_file import FeatureSet, save_features
from features.importers import ARRAY_NAMES, import_arrays, import_mat, load_array

declare_once(flags.DEFINE_string, "input", None, "A layumi-style pytorch_result.mat (MATLAB v5 or v7.3).")
for _name in ARRAY_NAMES:
    declare_once(flags.DEFINE_string, _name, None,
                 f"Instead of --input: {_name.replace('_', ' ')} as .npy, .npz:KEY, .txt or .csv"
                 + (" (optional split)" if _name.startswith("train") else "") + ".")
declare_once(flags.DEFINE_string, "dataset", "", "Dataset registry name recorded in the feature file.")
declare_once(flags.DEFINE_string, "output", None, "Feature file to write (.npz).")
FLAGS = flags.FLAGS


def import_from_flags() -> FeatureSet:
    given = {name: getattr(FLAGS, name) for name in ARRAY_NAMES if getattr(FLAGS, name)}
    if FLAGS.input and given:
        raise app.UsageError(f"give either --input or the array flags, not both (got --input and {sorted(given)})")
    if FLAGS.input:
        return import_mat(FLAGS.input, dataset=FLAGS.dataset)
    if not given:
        raise app.UsageError("give --input=pytorch_result.mat or --query_features, --gallery_features, ... arrays")
    arrays = {name: load_array(spec, f"--{name}") for name, spec in given.items()}
    return import_arrays(**arrays, dataset=FLAGS.dataset, origin=", ".join(sorted(set(given.values()))))


def main(argv):
    del argv
    if not FLAGS.output:
        raise app.UsageError("--output is required")
    imported = import_from_flags()
    save_features(FLAGS.output, imported)
    print(f"wrote {FLAGS.output}: {imported.summary()}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()

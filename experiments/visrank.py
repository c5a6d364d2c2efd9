r"""Ranked lists as pictures (`reid-visrank`): for chosen queries, the query image and its top gallery images, one
PNG per query, from one ranking file or two side by side (e.g. before and after re-ranking); when the rankings are
labelled, correct matches are framed green and wrong ones red, otherwise every frame is grey.

    acp-rerank --features=F.npz --method=none --top_list=before.json
    acp-rerank --features=F.npz --method=acp --checkpoint=runs/acp --top_list=after.json
    reid-visrank --top_lists=before.json,after.json --titles=baseline,ACP --output_dir=pictures --num_queries=5

A ranking file is any `rerank.rankings` file (.json, .csv or .npz: what `acp-rerank --top_list` writes, search
mode included). Two files must rank the same queries. With labels, gallery images of the query's identity seen by
the query's camera are left out, as the Market-1501 evaluation protocol ignores them.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from engine.flags import declare_once  # noqa: E402
from experiments.plots import ranked_lists  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("top_lists", [], "One or two ranking files (.json, .csv or .npz; acp-rerank --top_list), drawn as "
                  "rows side by side.")
flags.DEFINE_list("titles", [], "A title per ranking file (default: the file names).")
flags.DEFINE_list("queries", [], "Queries to draw (their `query` numbers); default: --num_queries drawn at random "
                  "with --seed.")
flags.DEFINE_integer("num_queries", 5, "Queries drawn at random when --queries is not given.", lower_bound=1)
flags.DEFINE_integer("num_shown", 10, "Gallery images shown per ranked list.", lower_bound=1)
declare_once(flags.DEFINE_string, "output_dir", "pictures", "Folder the PNGs go to (query_<query>.png).")
declare_once(flags.DEFINE_integer, "seed", 0, "Seed of the random choice of queries.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        written = ranked_lists.draw_top_lists(FLAGS.top_lists, FLAGS.titles, FLAGS.output_dir, FLAGS.queries,
                                              FLAGS.num_queries, FLAGS.num_shown, FLAGS.seed)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    for path in written:
        print(path)


def run():
    app.run(main)


if __name__ == "__main__":
    app.run(main)

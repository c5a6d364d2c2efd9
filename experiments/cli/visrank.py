r"""reid-visrank: ranked lists as pictures (the library is `experiments.plots.ranked_lists`): for chosen queries, the query image and its top gallery images, one
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

from absl import flags

from engine import cli
from experiments.plots import ranked_lists

FLAGS = cli.new_flags()
flags.DEFINE_list("top_lists", [], "One or two ranking files (.json, .csv or .npz; acp-rerank --top_list), drawn as "
                  "rows side by side.", flag_values=FLAGS)
flags.DEFINE_list("titles", [], "A title per ranking file (default: the file names).", flag_values=FLAGS)
flags.DEFINE_list("queries", [], "Queries to draw (their `query` numbers); default: --num_queries drawn at random "
                  "with --seed.", flag_values=FLAGS)
flags.DEFINE_integer("num_queries", 5, "Queries drawn at random when --queries is not given.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("num_shown", 10, "Gallery images shown per ranked list.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("output_dir", "pictures", "Folder the PNGs go to (query_<query>.png).", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed of the random choice of queries.", lower_bound=0, flag_values=FLAGS)


def main(argv):
    del argv
    value = {name: FLAGS[name].value for name in ("titles", "output_dir", "queries", "num_queries", "num_shown",
                                                  "seed")}
    for path in ranked_lists.draw_top_lists(FLAGS["top_lists"].value, **value):
        print(path)


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

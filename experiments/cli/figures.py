r"""reid-figures: draw the papers' figures as PNG files (the library is `experiments.figures`; needs the "plots"
extra: matplotlib, and scikit-learn for t-SNE).

    reid-figures --figure=k1_sweep --table=acp_fig10 --results_dir=results            # ACP Figs. 10-12
    reid-figures --figure=co_attention --checkpoint=runs/kvmmn_market --image_a=A.jpg --image_b=B.jpg \
        --locations=4:3,10:2 --heads=1,2,3,4                                        # KVM-MN Figs. 1 and 3
    reid-figures --figure=memory_attention --checkpoint=runs/acp_market --features=features/market1501.npz
    reid-figures --figure=tsne --features=features/market1501.npz --checkpoint=runs/acp_market  # ACP Figs. 3, 9

PNGs go to --output (default `<results_dir>/figures/<figure name>.png`).
"""
from __future__ import annotations

from absl import flags

from engine import cli
from experiments.figures import FIGURES, draw_figure

FLAGS = cli.new_flags()
flags.DEFINE_enum("figure", None, list(FIGURES), "Figure to draw.", flag_values=FLAGS)
flags.DEFINE_string("output", None, "PNG to write (default <results_dir>/figures/<name>.png).", flag_values=FLAGS)
flags.DEFINE_string("results_dir", "results", "Results of reid-experiments (sweep figures).", flag_values=FLAGS)
flags.DEFINE_string("table", None, "Sweep figures: the table whose results to draw (acp_fig10, acp_fig11 for k1; "
                    "acp_fig12 for k2).", flag_values=FLAGS)
flags.DEFINE_string("checkpoint", None, "co_attention: a kvmmn-train --train_dir (or checkpoint prefix); "
                    "memory_attention / tsne: an acp-train --train_dir.", flag_values=FLAGS)
flags.DEFINE_string("image_a", None, "co_attention: the probe image A.", flag_values=FLAGS)
flags.DEFINE_string("image_b", None, "co_attention: the gallery image B.", flag_values=FLAGS)
cli.define(FLAGS, "heads", tuple[int, ...], (), "co_attention: heads to draw, 1-based (default all).",
           cli.AT_LEAST_ONE)
flags.DEFINE_list("locations", [], "co_attention: reference locations ROW:COL in A's feature map (default its "
                  "centre).", flag_values=FLAGS)
flags.DEFINE_string("features", None, "memory_attention / tsne: a feature file (.npz).", flag_values=FLAGS)
flags.DEFINE_integer("query_index", 0, "memory_attention: the query row (within the file's query rows).",
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("list_length", 21, "memory_attention: the query and its list_length - 1 nearest gallery images "
                     "(Fig. 7: top-20).", lower_bound=2, flag_values=FLAGS)
flags.DEFINE_integer("k1", 25, "tsne: neighbourhood of the expansion (Eq. 1).", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer("k2", 6, "Refinement length.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_enum("subset", "test", ["test", "train"], "tsne: the query + gallery rows (Fig. 3) or the train rows "
                  "(Fig. 9).", flag_values=FLAGS)
flags.DEFINE_integer("max_identities", 30, "tsne: identities drawn (chosen at random).", lower_bound=1,
                     flag_values=FLAGS)
cli.define(FLAGS, "perplexity", float, 30.0, "tsne: t-SNE perplexity.", cli.POSITIVE)
flags.DEFINE_integer("seed", 0, "Seed of the identity choice and of t-SNE.", lower_bound=0, flag_values=FLAGS)


def main(argv):
    del argv
    figure = cli.require(FLAGS, "figure", f"one of {', '.join(FIGURES)}")
    options = {name: FLAGS[name].value for name in (
        "results_dir", "table", "checkpoint", "image_a", "image_b", "heads", "locations", "features", "query_index",
        "list_length", "k1", "k2", "subset", "max_identities", "perplexity", "seed")}
    print(f"wrote {draw_figure(figure, FLAGS['output'].value, **options)}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

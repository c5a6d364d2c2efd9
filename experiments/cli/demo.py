r"""reid-demo: a dataset end to end through the evaluation protocol, on the synthetic dataset by default (generated
on first use), with the numbers as JSON and the rankings as pictures (the library is `experiments.demo`).

    reid-demo                                                     # synthetic dataset, default root, all parts
    reid-demo --parts=histogram --dataset=market1501 --data_root=/data/Market-1501-v15.09.15

Parts (`--parts`): `histogram` (colour histograms beside random ranking, any dataset), `kvmmn` (a small KVM-MN
trained on the CPU, with a co-attention picture) and `rerank` (the re-ID baseline re-ranked by AQE, alpha-QE,
k-reciprocal and ACP, with before / after pictures); the learned parts use the synthetic dataset only.
"""
from __future__ import annotations

import os

from absl import flags

from engine import cli
from experiments.demo import (KVMMN_SEEDS, PARTS, check_parts, claims, co_attention_picture, evaluate_baseline,
                              pick_queries, report, rerank_pictures, summary, write_json)

FLAGS = cli.new_flags()
cli.define_dataset_flags(FLAGS, strict_decoding=True, root_help="Dataset folder; for the synthetic dataset the default is "
                         "data.synthetic.DEFAULT_ROOT, where it is generated on first use.")
flags.DEFINE_integer("seed", 0, "Seed of the single-shot sampling, the random-ranking reference and the pictures' "
                     "queries.", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_list("kvmmn_seeds", [str(s) for s in KVMMN_SEEDS], "Training seeds of the kvmmn part: one KVM-MN "
                  "is trained per seed and the table gives their mean (each seed's numbers go to the JSON as "
                  "kvmmn_seed<S>, pooled_l2_seed<S>); one seed is about a minute on 2 CPU cores.", flag_values=FLAGS)
flags.DEFINE_list("parts", list(PARTS), f"Parts of the demo to run, from {', '.join(PARTS)} ('acp' is accepted for "
                  "rerank); kvmmn and rerank need --dataset=synthetic.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", "demo_output", "Folder of the pictures (PNG) and, by default, of the JSON results.",
                    flag_values=FLAGS)
flags.DEFINE_string("output_json", None, "Where every printed number goes as JSON, {part: {method: {rank1, mAP}}} in "
                    "[0, 1] (default <output_dir>/results.json).", flag_values=FLAGS)
flags.DEFINE_integer("num_pictures", 3, "Queries drawn (at random, with --seed) for the before / after re-ranking "
                     "pictures; 0 draws none.", lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer("num_stripes", 6, "Horizontal stripes of the colour histograms.", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_integer("bins", 8, "Histogram bins per colour channel.", lower_bound=1, flag_values=FLAGS)
cli.define(FLAGS, "center_sigma", float, 0.15, "Width of the Gaussian that weighs pixels by their horizontal distance "
           "to the image centre, as a fraction of the image width; 0 weighs all pixels equally.", cli.NON_NEGATIVE)
flags.DEFINE_bool("center_per_camera", True, "Subtract each camera's mean feature (query and gallery together).",
                  flag_values=FLAGS)
flags.DEFINE_enum("metric", "euclidean", ["euclidean", "cosine"], "Distance between features.", flag_values=FLAGS)
flags.DEFINE_integer("max_rank", 50, "Length of the CMC curve.", lower_bound=1, flag_values=FLAGS)


def kvmmn_seeds(values) -> list[int]:
    """--kvmmn_seeds as distinct non-negative integers (cli.UserError naming the flag otherwise)."""
    try:
        seeds = [int(v) for v in values]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise cli.UserError(f"--kvmmn_seeds={','.join(values)}: give one or more distinct non-negative integers")
    return seeds


def main(argv):
    del argv
    value = {name: flag.value for name, flag in cli.own_flags(FLAGS).items()}
    data = cli.dataset_kwargs(FLAGS)
    parts = check_parts(value["parts"], data["name"])
    seeds = kvmmn_seeds(value["kvmmn_seeds"])
    if data["root"] is None and data["name"] != "synthetic":
        raise cli.UserError(f"--data_root is required for --dataset={data['name']}")
    output_dir = value["output_dir"]
    output_json = value["output_json"] or os.path.join(output_dir, "results.json")
    results, pictures = {}, []
    if "histogram" in parts:
        outcome = evaluate_baseline(data.pop("name"), data.pop("root"), data.pop("split"), value["num_stripes"],
                                    value["bins"], value["center_sigma"] or None, value["center_per_camera"],
                                    value["metric"], value["max_rank"], value["seed"], progress=True,
                                    load_options=data)
        print(report(outcome))
        results["histogram"] = {"histogram": summary(outcome["baseline"]), "random": summary(outcome["chance"])}
    # Imported here so that `--parts=histogram` does not pay for building the models.
    if "kvmmn" in parts:
        from kvmmn import demo as kvmmn_demo
        print("\n== KVM-MN ==")
        outcome = kvmmn_demo.run_demo(value["data_root"], seeds=seeds)
        results["kvmmn"] = {method: summary(result) for method, result in outcome["results"].items()}
        if len(outcome["per_seed"]) > 1:
            results["kvmmn"].update({f"{method}_seed{seed}": summary(result)
                                     for seed, methods in outcome["per_seed"].items()
                                     for method, result in methods.items()})
        pictures.append(co_attention_picture(outcome["model"], outcome["record"], output_dir, value["seed"]))
    if "rerank" in parts:
        from acp import demo as acp_demo
        print("\n== Re-ranking ==")
        outcome = acp_demo.run_demo(value["data_root"])
        results["rerank"] = {method: summary(result) for method, result in outcome["results"].items()}
        if value["num_pictures"]:
            features = outcome["features"]
            queries = pick_queries(len(features.query), value["num_pictures"], value["seed"])
            pictures += rerank_pictures(features.query, features.gallery, outcome["protocol"],
                                        {"baseline": outcome["distances"]["baseline"],
                                         "ACP": outcome["distances"]["acp"]}, queries, output_dir)
    checked = claims(results)
    if checked:
        print("\nWhat the demo shows, on identities never seen in training:\n" + "\n".join(checked))
    print(f"\nResults (JSON): {write_json(output_json, results)}")
    for path in pictures:
        print(f"Picture: {path}")


def run():
    cli.run(main, FLAGS, __doc__)


if __name__ == "__main__":
    run()

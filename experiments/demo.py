"""The main job of the README: a dataset end to end through the evaluation protocol, on the synthetic dataset by
default (generated on first use), with the numbers as JSON and the rankings as pictures.

Three parts, each selectable with `--parts`:
- `histogram`: the non-learned colour-histogram baseline of `data.handcrafted` beside random ranking, on any dataset;
- `kvmmn`: a small KVM-MN trained on CPU on the synthetic training identities (`kvmmn.demo`), its CMC / mAP on the
  test identities beside the pooled-L2 ranking of the same backbone; the co-attention maps of a matched pair
  (KVM-MN Fig. 3 style) as a PNG;
- `rerank` (formerly `acp`, still accepted): the re-ID baseline trained on the synthetic training identities, its
  features re-ranked by AQE, alpha-QE, k-reciprocal and an ACP trained on the training features (`acp.demo`); for
  a few queries (drawn with `--seed`, not picked), the top-10 gallery images before and after ACP as PNGs, correct
  matches framed green and wrong ones red.
The learned parts train on the synthetic dataset only (real datasets go through the binaries, see WORKSPACE.md).
Every number printed goes to `--output_json` as {part: {method: {"rank1": r, "mAP": m}}} (fractions).

    reid-demo                                                    # synthetic dataset, default root, all parts
    reid-demo --parts=histogram --dataset=market1501 --data_root=/data/Market-1501-v15.09.15

The binary is `reid-demo` (`experiments.cli.demo`); this module holds what it calls.
"""
from __future__ import annotations

import json
import os

import numpy as np

from data import datasets, evaluation, handcrafted
from engine import atomic
from rerank.evaluation import evaluate_features

PARTS = ("histogram", "kvmmn", "rerank")
PART_ALIASES = {"acp": "rerank"}  # the part's name before it showed every re-ranker, kept for users' scripts
TOP_K = 10  # gallery images per ranked list in the pictures
# Training seeds of the kvmmn part: the table gives the mean of one KVM-MN per seed, since one run's margin over
# its backbone's pooled-L2 ranking depends on its seed (kvmmn.demo's docstring has the spread).
KVMMN_SEEDS = (0, 1, 2)

def evaluate_baseline(dataset: str, root: str | None, split: str | None = None, num_stripes: int = 6, bins: int = 8,
                      center_sigma: float | None = 0.15, center_per_camera: bool = True, metric: str = "euclidean",
                      max_rank: int = 50, seed: int = 0, progress: bool = False,
                      load_options: dict | None = None) -> dict:
    """Colour-histogram features (`data.handcrafted`) of the record's query and gallery, optionally centred per
    camera, evaluated under the record's protocol.

    `root` None is the synthetic dataset's default folder; `load_options` go to `data.datasets.load` (for the
    synthetic dataset, `data.synthetic.SyntheticConfig` fields).

    Returns a dict with `record` (the `data.record.Record`), `baseline` and `chance` (result dicts of
    `rerank.evaluation.evaluate_features`; `chance` ranks random features) and `feature_dim`.
    """
    record = datasets.load(dataset, root, split=split, **(load_options or {}))
    labels = [np.array([getattr(s, field) for s in subset])
              for field in ("pid", "camid") for subset in (record.query, record.gallery)]
    options = dict(protocol=record.protocol, max_rank=max_rank, seed=seed)
    features = [handcrafted.histogram_features([s.path for s in subset], num_stripes, bins, center_sigma,
                                               progress=progress) for subset in (record.query, record.gallery)]
    if center_per_camera:
        centered = handcrafted.center_per_camera(np.concatenate(features), np.concatenate(labels[2:]))
        features = [centered[:len(record.query)], centered[len(record.query):]]
    baseline = evaluate_features(*features, *labels, metric=metric, progress=progress, **options)
    rng = np.random.default_rng(seed)
    noise = [rng.standard_normal((len(f), 16), dtype=np.float32) for f in features]
    chance = evaluate_features(*noise, *labels, metric="euclidean", **options)
    return {"record": record, "baseline": baseline, "chance": chance, "feature_dim": features[0].shape[1]}


def report(outcome: dict, ranks=(1, 5, 10)) -> str:
    """The demo's printed summary: the record, the baseline's metrics and the random-ranking reference."""
    chance = outcome["chance"]
    chance_ranks = ", ".join(f"rank-{r} {100 * chance['cmc'][r - 1]:.1f}%" for r in ranks
                             if r <= len(chance["cmc"]))
    return "\n".join([
        outcome["record"].summary(), "",
        f"Colour-histogram baseline ({outcome['feature_dim']}-d), protocol {outcome['record'].protocol}:",
        evaluation.format_results(outcome["baseline"], ranks), "",
        f"Random ranking: mAP {100 * chance['mAP']:.1f}%, mINP {100 * chance['mINP']:.1f}%, {chance_ranks}"])


def check_parts(parts, dataset: str) -> tuple[str, ...]:
    """The demo parts to run, validated against PARTS and the dataset (learned parts need the synthetic one)."""
    parts = [PART_ALIASES.get(p, p) for p in parts]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"--parts={','.join(parts)}: choose one or more of {', '.join(PARTS)}")
    if dataset not in datasets.names():
        raise ValueError(f"--dataset={dataset}: unknown; known datasets: {', '.join(datasets.names())}")
    learned = [p for p in parts if p != "histogram"]
    if learned and dataset != "synthetic":
        raise ValueError(f"--parts={','.join(learned)} train on the synthetic dataset only; use --parts=histogram "
                             f"with --dataset={dataset}, and the kvmmn-* / acp-* binaries for real datasets")
    return tuple(p for p in PARTS if p in parts)


def summary(result: dict) -> dict:
    """{"rank1", "mAP"} (fractions) of an evaluation result (any dict with "cmc" and "mAP")."""
    return {"rank1": float(result["cmc"][0]), "mAP": float(result["mAP"])}


def write_json(path: str, results: dict) -> str:
    """`results` ({part: {method: {"rank1", "mAP"}}}) as JSON at `path`, atomically."""
    return atomic.write_text(path, json.dumps(results, indent=1, sort_keys=True) + "\n")


def pick_queries(num_queries: int, count: int, seed: int) -> list[int]:
    """`count` query rows drawn uniformly with `seed` (the pictures show a sample, not the best cases)."""
    count = min(count, num_queries)
    return sorted(int(q) for q in np.random.default_rng(seed).choice(num_queries, count, replace=False))


def rerank_pictures(query, gallery, protocol: str, rankings: dict, queries, output_dir: str) -> list[str]:
    """One PNG per query row in `queries`: the query, then each ranking's top-10 gallery images as the evaluation
    sees them (same identity and camera removed), framed green (match) or red; drawn as `reid-visrank` draws a
    ranking file (`rerank.rankings`).

    query, gallery: feature-file rows (`path`, `pid`, `camid` arrays); rankings: {title: [Q, G] distances}."""
    from experiments.plots import ranked_lists
    from rerank.rankings import from_top

    ranked = {}
    for title, distances in rankings.items():
        top = evaluation.ranked_top_k(distances, TOP_K, query.pid, gallery.pid, query.camid, gallery.camid, protocol)
        ranked[title] = from_top(top, np.take_along_axis(np.asarray(distances), np.maximum(top, 0), axis=1),
                                 query.path, gallery.path, query.pid, query.camid, gallery.pid, gallery.camid)
    return ranked_lists.draw_rankings(ranked, queries, output_dir, TOP_K)


def co_attention_picture(model, record, output_dir: str, seed: int) -> str:
    """KVM-MN's co-attention maps (Fig. 3 style, every head, the feature map's centre as the reference location)
    for a matched pair of test images: a query drawn with `seed` and its identity's first image from another
    camera in the gallery."""
    from experiments.plots import co_attention

    rng = np.random.default_rng(seed)
    candidates = [(q, g) for q in rng.permutation(len(record.query)) for g in range(len(record.gallery))
                  if record.gallery[g].pid == record.query[q].pid and record.gallery[g].camid != record.query[q].camid]
    if not candidates:
        raise ValueError("co-attention picture: no query has a match from another camera in the gallery")
    q, g = candidates[0]
    rows, cols = model.config.feature_shape
    location = [(rows // 2, cols // 2)]
    maps_a, maps_b = co_attention.attention_maps(model, record.query[q].path, record.gallery[g].path, location)
    return co_attention.draw(record.query[q].path, record.gallery[g].path, maps_a, maps_b, location,
                             list(range(model.config.num_heads)), model.config.image_size,
                             os.path.join(output_dir, "kvmmn_co_attention.png"))


def claims(results: dict) -> list[str]:
    """The comparisons the demo exists to show, each a line saying whether it held (mAP and rank-1 margins in
    points): KVM-MN against its backbone's pooled-L2 ranking and the colour histograms; ACP against the baseline it
    re-ranks and against k-reciprocal."""
    # (part, method, other part, other method, strictly above?, text); a comparison holds on mAP
    pairs = [("kvmmn", "kvmmn", "kvmmn", "pooled_l2", True, "KVM-MN above the pooled-L2 ranking of its backbone"),
             ("kvmmn", "kvmmn", "histogram", "histogram", True, "KVM-MN above the colour histograms"),
             ("rerank", "acp", "rerank", "baseline", True, "ACP above the baseline it re-ranks"),
             ("rerank", "acp", "rerank", "k_reciprocal", False, "ACP at least as good as k-reciprocal")]
    lines = []
    for part, method, other_part, other, strictly, text in pairs:
        if method not in results.get(part, {}) or other not in results.get(other_part, {}):
            continue
        ours, theirs = results[part][method], results[other_part][other]
        margin = {m: 100 * (ours[m] - theirs[m]) for m in ("mAP", "rank1")}
        held = margin["mAP"] > 0 if strictly else margin["mAP"] >= 0
        lines.append(f"  [{'yes' if held else 'NO '}] {text}: mAP {margin['mAP']:+.1f}, rank-1 "
                     f"{margin['rank1']:+.1f} points")
    return lines



if __name__ == "__main__":  # `python -m experiments.demo`, as before the binary moved to experiments.cli.demo
    from experiments.cli.demo import run

    run()

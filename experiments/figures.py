r"""Draw the papers' figures as PNG files (needs the "plots" extra: matplotlib, and scikit-learn for t-SNE); the
binary is `reid-figures` (`experiments.cli.figures`).

    # ACP Figs. 10-12 from the results of `experiments.run --table=acp_fig10` (acp_fig11, acp_fig12)
    reid-figures --figure=k1_sweep --table=acp_fig10 --results_dir=results
    reid-figures --figure=k2_sweep --table=acp_fig12 --results_dir=results
    # KVM-MN Figs. 1 and 3: co-attention of heads 1-4 at two reference locations of the probe
    reid-figures --figure=co_attention --checkpoint=runs/kvmmn_market \
        --image_a=query/0001_c1s1_001051_00.jpg --image_b=bounding_box_test/0001_c2s1_000301_01.jpg \
        --locations=4:3,10:2 --heads=1,2,3,4
    # ACP Fig. 7: memory attention over the query and its top-20 gallery images
    reid-figures --figure=memory_attention --checkpoint=runs/acp_market \
        --features=features/market1501.npz --query_index=0 --list_length=21
    # ACP Fig. 3: t-SNE before / after expansion; Fig. 9: t-SNE of the training embeddings
    reid-figures --figure=tsne --features=features/market1501.npz --checkpoint=runs/acp_market
    reid-figures --figure=tsne --features=features/veriwild.train.npz --subset=train

PNGs go to --output (default `<results_dir>/figures/<figure name>.png`).
"""
from __future__ import annotations

import os

from experiments import tables

FIGURES = ("k1_sweep", "k2_sweep", "co_attention", "memory_attention", "tsne")
SWEEP_PARAMETER = {"k1_sweep": "k1", "k2_sweep": "k2"}


def sweep_figure(name: str, table_name: str, results_dir: str, output: str) -> str:
    from experiments.plots import sweeps

    return sweeps.draw(tables.get(table_name), results_dir, SWEEP_PARAMETER[name], output)


def co_attention_figure(checkpoint: str, image_a: str, image_b: str, heads, locations, output: str) -> str:
    """Heads are 1-based as in the paper's figures; locations "ROW:COL" (default: the feature map's centre)."""
    from experiments.plots import co_attention
    from kvmmn.training import load_trained_model

    model = load_trained_model(checkpoint)[0]
    config = model.config
    rows, cols = config.feature_shape
    locations = [co_attention.parse_location(text, (rows, cols)) for text in locations] or [(rows // 2, cols // 2)]
    heads = [int(h) - 1 for h in heads] or list(range(config.num_heads))
    bad = [h + 1 for h in heads if not 0 <= h < config.num_heads]
    if bad:
        raise ValueError(f"--heads {bad}: the model has heads 1..{config.num_heads}")
    maps_a, maps_b = co_attention.attention_maps(model, image_a, image_b, locations)
    return co_attention.draw(image_a, image_b, maps_a, maps_b, locations, heads, config.image_size, output)


def memory_attention_figure(checkpoint: str, features_path: str, query_index: int, list_length: int, k2: int,
                            output: str) -> str:
    from acp import checkpoint as acp_checkpoint
    from features import feature_file as feature_io
    from experiments.plots import memory_attention

    model = acp_checkpoint.restore_model(checkpoint)[0]
    features = feature_io.load_features(features_path)
    weights = memory_attention.memory_attention(model, features, query_index, list_length, k2)
    return memory_attention.draw(weights, features, query_index, output)


def tsne_figure(features_path: str, subset: str, checkpoint: str | None, k1: int, k2: int, max_identities: int,
                perplexity: float, seed: int, output: str) -> str:
    """Fig. 9 (subset "train": one panel) or Fig. 3 (subset "test", with an ACP checkpoint: before / after)."""
    from features import feature_file as feature_io
    from experiments.plots import embeddings

    features = feature_io.load_features(features_path)
    rows = features.train if subset == "train" else features.select(features.split != feature_io.SPLIT_CODES["train"])
    if not len(rows):
        raise ValueError(f"{features_path} has no {subset} rows")
    panels = [("baseline embeddings", rows.embedding)]
    if checkpoint:
        from acp import checkpoint as acp_checkpoint

        model = acp_checkpoint.restore_model(checkpoint)[0]
        panels.append((f"expanded embeddings (ACP, k1 = {k1})", embeddings.expanded_embeddings(model, rows, k1, k2)))
    chosen = embeddings.choose_identities(rows.pid, max_identities, seed)
    panels = [(title, values[chosen]) for title, values in panels]
    title = f"t-SNE of {os.path.basename(features_path)} ({subset}, {len(set(rows.pid[chosen]))} identities)"
    return embeddings.draw(panels, rows.pid[chosen], output, title, perplexity, seed)


def draw_figure(name: str, output: str | None = None, **options) -> str:
    """Draw figure `name` (one of FIGURES) with the options its function takes; returns the PNG path."""
    output = output or os.path.join(options.get("results_dir", "results"), "figures", f"{name}.png")
    if name in SWEEP_PARAMETER:
        if not options.get("table"):
            raise ValueError(f"--figure={name} needs --table (acp_fig10 / acp_fig11 for k1, acp_fig12 for k2)")
        return sweep_figure(name, options["table"], options.get("results_dir", "results"), output)
    if name == "co_attention":
        for required in ("checkpoint", "image_a", "image_b"):
            if not options.get(required):
                raise ValueError(f"--figure=co_attention needs --{required}")
        return co_attention_figure(options["checkpoint"], options["image_a"], options["image_b"],
                                   options.get("heads", []), options.get("locations", []), output)
    if name == "memory_attention":
        for required in ("checkpoint", "features"):
            if not options.get(required):
                raise ValueError(f"--figure=memory_attention needs --{required}")
        return memory_attention_figure(options["checkpoint"], options["features"], options.get("query_index", 0),
                                       options.get("list_length", 21), options.get("k2", 6), output)
    if name == "tsne":
        if not options.get("features"):
            raise ValueError("--figure=tsne needs --features")
        return tsne_figure(options["features"], options.get("subset", "test"), options.get("checkpoint"),
                           options.get("k1", 25), options.get("k2", 6), options.get("max_identities", 30),
                           options.get("perplexity", 30.0), options.get("seed", 0), output)
    raise ValueError(f"unknown figure {name!r}; choose one of {', '.join(FIGURES)}")



if __name__ == "__main__":  # `reid-figures`, as before the binary moved to experiments.cli.figures
    from experiments.cli.figures import run

    run()

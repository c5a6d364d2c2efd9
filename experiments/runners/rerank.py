"""Re-ranking rows (ACP Tables V, VII-X, Figs. 10-12): one method on every evaluation split of a data set, through
`rerank.runner.evaluate_method` (what `acp-rerank` runs), averaged over the splits.

Row settings:
- `method`: "none" (the baseline ranking), "acp", or a classic re-ranker of `rerank.METHODS`.
- `params`: the method's parameters (k2, alpha, ECN's k/t/q, or an explicit k / k1).
- `neighbourhood`: "N/C" (gallery images per gallery identity, `rerank.neighbourhood.default_k1`) or a number; it sets
  the method's first-order neighbourhood (`rerank.registry.Reranker.first_order`: k of AQE / alpha-QE, k1 of the
  others) where `params` does not, as ACP Table IV does.
- `acp`: for method "acp", the model (`experiments.runners.acp_models`).

Distances are cosine (FastReID's test metric) for the baseline ranking and ACP's neighbour search; the classic
methods use their own. GNN needs k2 <= k1: k2 is clipped to k1 where Table IV's k2 = 6 exceeds a neighbourhood of 4
(VehicleID). Values: rank-1, rank-5, mAP in %, and time = seconds of re-ranking plus producing the re-ranked
distances for the evaluation, averaged over splits (a table shows the ones it has columns for).
"""
from __future__ import annotations

import numpy as np

from experiments.runners import RowResult, acp_models, feature_files
from features import feature_file as feature_io
from rerank import registry
from rerank import runner as rerank_runner
from rerank.neighbourhood import default_k1

METRIC = "cosine"


def resolve_params(settings, gallery_pids) -> dict:
    """The method's parameters on a gallery with identities `gallery_pids` (see the module docstring)."""
    method = settings["method"]
    params = dict(settings.get("params", {}))
    neighbourhood = settings.get("neighbourhood")
    if neighbourhood is not None:
        k = default_k1(gallery_pids) if neighbourhood == "N/C" else int(neighbourhood)
        for name in registry.get(method).first_order:
            params.setdefault(name, k)
    if method == "gnn" and "k1" in params and params.get("k2", params["k1"]) > params["k1"]:
        params["k2"] = params["k1"]
    return params


def run_row(row, context) -> RowResult:
    settings = row.settings
    method = settings["method"]
    model, checkpoint = None, None
    if method == "acp":
        model, checkpoint = acp_models.trained_model(context, row.data, settings["acp"])
    outcomes, used = [], []
    for split, path in feature_files.test_files(context, row.data):
        features = feature_io.load_features(path)
        params = resolve_params(settings, features.gallery.pid)
        outcome = rerank_runner.evaluate_method(features, method, params, model, metric=METRIC,
                                             verbose=1 if context.verbose > 1 else 0)
        outcomes.append(outcome)
        used.append({"split": split, "features": path, "params": outcome["params"]})
    values = {
        "rank-1": 100 * float(np.mean([o["cmc"][0] for o in outcomes])),
        "rank-5": 100 * float(np.mean([o["cmc"][4] for o in outcomes])),
        "mAP": 100 * float(np.mean([o["mAP"] for o in outcomes])),
        "time": float(np.mean([o["seconds_rerank"] + o["seconds_evaluate"] for o in outcomes])),
    }
    info = {"method": method, "splits": used, "protocol": outcomes[0]["protocol"]}
    if checkpoint:
        info["acp_train_dir"] = checkpoint
    return RowResult(values, info)

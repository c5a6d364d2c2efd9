"""ACP Table III: trainable parameters and MACCs of an ACP configuration, counted by `acp.params` (no data)."""
from __future__ import annotations

from acp import model as acp_model
from acp import params as acp_params
from experiments.runners import RowResult

DEFAULT_K1 = (25, 50)


def run_row(row, context) -> RowResult:
    """Row settings: `preset`, optional `overrides` (ACPConfig fields), `k2` (refinement length of the MACC
    count, default 6) and `k1` (sequence lengths, default 25 and 50). The scale plays no part: the counts are
    exact at both. Values: params_M (millions of trainable parameters), maccs_G_k1=<k1> (billions)."""
    del context
    settings = row.settings
    config = acp_model.make_config(settings["preset"], **settings.get("overrides", {}))
    k2 = settings.get("k2", 6)
    values = {"params_M": acp_params.count_params(config).total_trainable / 1e6}
    for k1 in settings.get("k1", DEFAULT_K1):
        values[f"maccs_G_k1={k1}"] = sum(acp_params.count_maccs(config, k1, k2).values()) / 1e9
    return RowResult(values, {"preset": settings["preset"], "k2": k2})

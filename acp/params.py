"""Analytic parameter and MACC counts of ACP (Table III); the `acp-params` binary (`acp.cli.params`) prints them.

    acp-params --preset=basic --k1=25
    acp-params --preset=xl --k1=50 --k2=6 --override=memory_size=4

Parameters are counted as the built Keras model holds them (`count_params(config).trainable` equals the sum of
its trainable weights, `.total` its `count_params()`, which adds the batch-norm moving statistics).

MACCs are counted per sequence (batch 1) for the matrix products, the part that dominates: every fully connected
layer and projection (in x out per row it is applied to), and both attention products (scores and the weighted
sum, d per query-key pair). Normalisation, activations, softmax and the element-wise scale of Eq. 2 are left out
(each is O(k1 d), below 0.3% of the total). The refinement's keys and values are the k2 rows of R only, and the
memory query only the probe row, as in the layers. Table III does not say which k2 it used; the default is k2 = 6,
Table VII's, and k2 moves the Basic total by 0.14M per unit (0.14%).
"""
import dataclasses

from acp import model as acp_model

# Table III: parameters, and MACCs by k1.
TABLE_III = {
    "basic": {"params": 4.61e6, "maccs": {25: 0.10e9, 50: 0.19e9}},
    "xl": {"params": 62.48e6, "maccs": {25: 1.26e9, 50: 2.40e9}},
}


@dataclasses.dataclass(frozen=True)
class ParamCount:
    """Per-module parameter counts; `non_trainable` holds the batch-norm moving statistics."""

    trainable: dict
    non_trainable: dict

    @property
    def total_trainable(self):
        return sum(self.trainable.values())

    @property
    def total(self):
        return self.total_trainable + sum(self.non_trainable.values())


def _attention_params(d):
    return 4 * d * d + 4 * d


def _encoder_layer_params(d, ffn_dim):
    return _attention_params(d) + 2 * d * ffn_dim + ffn_dim + d + 4 * d


def _module_names(config):
    """Module names in data-flow order; they are the layer names `acp.model.build_acp` gives."""
    names = ["multi_block_fusion" if config.use_fusion else "embedding_projection"]
    if config.use_encoder:
        names.append("base_encoder")
    if config.use_memory:
        names.append("memory_initialization")
        if config.use_refinement:
            names.append("memory_refinement")
        names.append("feature_reconstruction")
    names.append("correlation_classifier")
    return names


def count_params(config):
    """Parameters of the network `build_acp(config)` builds, by module (names as the model's layers)."""
    d, f, n_slots, d_m = config.model_dim, config.ffn_dim, config.memory_size, config.memory_dim
    d_in = sum(config.feature_dims)
    trainable = {
        "multi_block_fusion": d_in + d_in * d + d + 2 * d,
        "base_encoder": config.num_layers * _encoder_layer_params(d, f),
        "memory_initialization": n_slots * (3 * d * d_m + 1 + d_m * d + d + 2 * d),
        "memory_refinement": _encoder_layer_params(d, f),
        "feature_reconstruction": _attention_params(d),
        "correlation_classifier": d + 1,
    }
    non_trainable = {"multi_block_fusion": 2 * d, "memory_initialization": 2 * n_slots * d}
    trainable["embedding_projection"] = trainable["multi_block_fusion"]
    non_trainable["embedding_projection"] = non_trainable["multi_block_fusion"]
    names = _module_names(config)
    return ParamCount({name: trainable[name] for name in names},
                      {name: non_trainable.get(name, 0) for name in names})


def count_maccs(config, k1, k2):
    """Multiply-accumulates of one k1-long sequence with refinement length k2, by module (see module docstring)."""
    d, f, n_slots, d_m = config.model_dim, config.ffn_dim, config.memory_size, config.memory_dim
    k2 = min(k2, k1)
    projection = k1 * sum(config.feature_dims) * d
    self_attention = 4 * k1 * d * d + 2 * k1 * k1 * d
    ffn = 2 * d * f
    maccs = {
        "multi_block_fusion": projection,
        "embedding_projection": projection,
        "base_encoder": config.num_layers * (self_attention + k1 * ffn),
        # per slot: probe query, keys and values of all k1 rows, scores and sum, FC back to d
        "memory_initialization": n_slots * (d * d_m + 2 * k1 * d * d_m + 2 * k1 * d_m + d_m * d),
        # slots as queries (N rows) over the k2 rows of R: Q and O of N rows, K and V of k2, scores and sum, FFN
        "memory_refinement": 2 * n_slots * d * d + 2 * k2 * d * d + 2 * n_slots * k2 * d + n_slots * ffn,
        # k1 queries over N slots
        "feature_reconstruction": 2 * k1 * d * d + 2 * n_slots * d * d + 2 * k1 * n_slots * d,
        "correlation_classifier": k1 * d,
    }
    return {name: maccs[name] for name in _module_names(config)}


def format_report(config, k1, k2, preset=None):
    """The table `acp-params` prints: per-module parameters and MACCs, totals, and Table III's figures."""
    params, maccs = count_params(config), count_maccs(config, k1, k2)
    lines = [f"{'module':<24}{'parameters':>14}{f'MACCs (k1={k1}, k2={min(k2, k1)})':>26}"]
    for name in params.trainable:
        lines.append(f"{name:<24}{params.trainable[name]:>14,}{maccs[name]:>26,}")
    total_maccs = sum(maccs.values())
    lines.append(f"{'total':<24}{params.total_trainable:>14,}{total_maccs:>26,}")
    lines.append(f"{'':<24}{f'{params.total_trainable / 1e6:.2f}M':>14}{f'{total_maccs / 1e9:.3f}G':>26}")
    lines.append(f"batch-norm moving statistics (non-trainable, counted by Keras' count_params): "
                 f"{sum(params.non_trainable.values()):,}; Keras total {params.total:,}")
    paper = TABLE_III.get(preset)
    if paper is not None and config == acp_model.PRESETS[preset]:
        reference = f"Table III (ACP-{'Basic' if preset == 'basic' else 'XL'}): {paper['params'] / 1e6:.2f}M"
        if k1 in paper["maccs"]:
            reference += f", {paper['maccs'][k1] / 1e9:.2f}G MACCs at k1={k1}"
        lines.append(reference)
    return "\n".join(lines)

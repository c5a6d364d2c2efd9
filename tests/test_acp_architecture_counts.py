"""ACP's architecture pinned where a mutation would slip through a tolerance: the feature reconstruction is bare
multi-head attention (no residual), every module's parameter and MACC count is exact, and training sequences draw
their l1 samples uniformly from the candidate pool."""
import keras
import numpy as np
import pytest

from acp import layers, params, sequences
from acp import model as acp_model


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_feature_reconstruction_is_bare_attention_over_the_memory():
    """Z_rcs = MHA(Z W^Q, M* W^K, M* W^V) W^O, computed here from the layer's weights in NumPy: a residual (Z added)
    or a layer norm would change the output."""
    d, heads, k1, slots = 8, 2, 5, 3
    layer = layers.FeatureReconstruction(heads)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, k1, d)).astype(np.float32)
    memory = rng.normal(size=(2, slots, d)).astype(np.float32)
    out = keras.ops.convert_to_numpy(layer(z, memory))
    mha = [sub for sub in layer._flatten_layers(include_self=False)
           if isinstance(sub, keras.layers.MultiHeadAttention)]
    assert len(mha) == 1
    weights = {w.path.split("/")[-2] + "/" + w.name: keras.ops.convert_to_numpy(w) for w in mha[0].weights}
    q = np.einsum("bld,dhk->blhk", z, weights["query/kernel"]) + weights["query/bias"]
    k = np.einsum("bnd,dhk->bnhk", memory, weights["key/kernel"]) + weights["key/bias"]
    v = np.einsum("bnd,dhk->bnhk", memory, weights["value/kernel"]) + weights["value/bias"]
    attention = _softmax(np.einsum("blhk,bnhk->bhln", q, k) / np.sqrt(q.shape[-1]))
    context = np.einsum("bhln,bnhk->blhk", attention, v)
    expected = np.einsum("blhk,hkd->bld", context, weights["attention_output/kernel"]) + \
        weights["attention_output/bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


# Per module, by hand from the architecture (WORKSPACE.md "Readings"): d model width, f = 4d FFN width, N memory
# slots of width d_m, L encoder layers, inputs of total width D (f3 + f4 + f5); per sequence of k1 rows, k2 of them
# refining the memory. Attention = 4 d x d projections with biases; an encoder block adds the FFN and two layer norms.
def _hand_counts(c, k1, k2):
    d, f, n, dm, big_d, layers_ = c.model_dim, c.ffn_dim, c.memory_size, c.memory_dim, sum(c.block_dims), c.num_layers
    attention = 4 * d * d + 4 * d
    block = attention + (d * f + f) + (f * d + d) + 2 * (2 * d)
    parameters = {
        "multi_block_fusion": big_d + (big_d * d + d) + 2 * d,  # per-channel gamma, projection, batch-norm beta/gamma
        "base_encoder": layers_ * block,
        "memory_initialization": n * (3 * d * dm + 1 + (dm * d + d) + 2 * d),  # W^q,k,v (no bias), mu, FC, BN
        "memory_refinement": block,
        "feature_reconstruction": attention,
        "correlation_classifier": d + 1,
    }
    maccs = {
        "multi_block_fusion": k1 * big_d * d,
        "base_encoder": layers_ * (4 * k1 * d * d + 2 * k1 * k1 * d + 2 * k1 * d * f),
        "memory_initialization": n * (d * dm + 2 * k1 * d * dm + 2 * k1 * dm + dm * d),
        "memory_refinement": 2 * n * d * d + 2 * k2 * d * d + 2 * n * k2 * d + 2 * n * d * f,
        "feature_reconstruction": 2 * k1 * d * d + 2 * n * d * d + 2 * k1 * n * d,
        "correlation_classifier": k1 * d,
    }
    return parameters, maccs


@pytest.mark.parametrize("preset", ["basic", "xl"])
@pytest.mark.parametrize("k1", [25, 50])
def test_every_module_count_is_exact(preset, k1):
    config = acp_model.PRESETS[preset]
    parameters, maccs = _hand_counts(config, k1, 6)
    assert params.count_params(config).trainable == parameters
    assert params.count_maccs(config, k1, 6) == maccs


def test_totals_are_the_figures_workspace_states():
    """4,612,617 / 62,479,881 parameters (Table III: 4.61M / 62.48M); MACCs at k2 = 6."""
    totals = {preset: params.count_params(acp_model.PRESETS[preset]).total_trainable for preset in ("basic", "xl")}
    assert totals == {"basic": 4_612_617, "xl": 62_479_881}
    maccs = {(preset, k1): sum(params.count_maccs(acp_model.PRESETS[preset], k1, 6).values())
             for preset in ("basic", "xl") for k1 in (25, 50)}
    assert maccs == {("basic", 25): 96_788_736, ("basic", 50): 188_263_936,
                     ("xl", 25): 1_260_094_464, ("xl", 50): 2_412_427_264}


def test_training_sequences_draw_uniformly_from_the_pool():
    """The paper "randomly selects l1 samples" from the pool: over many steps every one of 48 pool members is
    chosen about half the time (24 of 48), whatever its rank; the chosen ones are then ordered nearest first."""
    pool = 48
    members = np.arange(1, pool + 1, dtype=np.int64)  # nearest first
    matches = np.zeros(pool, dtype=bool)
    matches[::5] = True
    pools = sequences.CandidatePools(members=members, matches=matches, offsets=np.array([0, pool]),
                                     num_neighbours=pool)
    sampler = sequences.SequenceSampler(pools, sequences.SequenceConfig(length=24, num_false=24), batch_size=1,
                                        seed=3)
    steps = 800
    counts = np.zeros(pool + 1)
    for step in range(steps):
        indices, labels = sampler.sequences(step)
        chosen = indices[0, 1:]
        assert indices[0, 0] == 0 and np.all(np.diff(chosen) > 0)  # the probe first, then nearest first
        np.testing.assert_array_equal(labels[0, 1:], matches[chosen - 1])
        counts[chosen] += 1
    frequency = counts[1:] / steps
    # Binomial(800, 0.5) per member: standard deviation 0.018; 5 sigma is 0.09.
    assert np.all(np.abs(frequency - 0.5) < 0.09), frequency
    near, far = frequency[:24].mean(), frequency[24:].mean()
    assert abs(near - far) < 0.03
    # Two steps draw different selections.
    assert not np.array_equal(sampler.sequences(0)[0], sampler.sequences(1)[0])


def test_rank_encoding_adds_the_sinusoid_of_each_rank_and_spares_padding():
    d, k1 = 8, 5
    x = np.zeros((1, k1, d), np.float32)
    mask = np.array([[True, True, True, True, False]])
    out = keras.ops.convert_to_numpy(layers.RankEncoding()(x, mask=mask))
    rank, pair = np.arange(k1)[:, None], np.arange(d)[None, :] // 2
    angle = rank / 10000.0 ** (2 * pair / d)
    expected = np.where(np.arange(d) % 2 == 0, np.sin(angle), np.cos(angle))
    np.testing.assert_allclose(out[0, :4], expected[:4], atol=1e-6)
    np.testing.assert_array_equal(out[0, 4], 0.0)  # a padded row passes unchanged
    assert not layers.RankEncoding().build([None, k1, d]) and not layers.RankEncoding().weights


def test_acp_config_files_without_the_rank_encoding_describe_models_without_it(tmp_path):
    import json

    from acp import checkpoint as acp_checkpoint

    config = acp_model.make_config("basic", num_layers=1)
    assert config.position_encoding
    acp_checkpoint.save_config(str(tmp_path), "basic", config)
    path = tmp_path / acp_checkpoint.CONFIG_FILE
    stored = json.loads(path.read_text())
    del stored["config"]["position_encoding"]  # as written before the field existed
    path.write_text(json.dumps(stored))
    assert acp_checkpoint.load_config(str(tmp_path))[1] == config.replace(position_encoding=False)

"""Deliberate bugs the suite must catch (`tests/mutation_check.py`). Each: a name, why it matters, the edits
(file, exact old text, new text) and the test files that must then fail. When the code moves, a mutation turns
STALE: update its text here rather than dropping it."""

MUTATIONS = [
    {"name": "eval_ranked_lists_keep_same_camera",
     "why": "pictures would show the same-camera shots the protocol ignores",
     "edits": [("data/evaluation.py", "order = order[~removed]", "order = order")],
     "tests": ["tests/test_ranked_lists.py"]},
    {"name": "pictures_swap_frame_colours",
     "why": "correct matches would be framed red",
     "edits": [("experiments/plots/ranked_lists.py", "(GREEN if match else RED)", "(RED if match else GREEN)")],
     "tests": ["tests/test_ranked_lists.py"]},
    {"name": "acp_reconstruction_residual",
     "why": "feature reconstruction is bare attention (no residual), as the Table III counts require",
     "edits": [("acp/layers.py", "return self.attention(sequence, memory, training=training)",
                "return sequence + self.attention(sequence, memory, training=training)")],
     "tests": ["tests/test_acp_architecture_counts.py"]},
    {"name": "acp_params_refinement_maccs_dropped",
     "why": "the refinement block's MACCs are part of Table III's totals",
     "edits": [("acp/params.py", '"memory_refinement": 2 * n_slots * d * d', '"memory_refinement": 0 * n_slots * d * d')],
     "tests": ["tests/test_acp_architecture_counts.py"]},
    {"name": "acp_sequences_nearest_not_random",
     "why": "the paper draws l1 samples at random from the pool, not the nearest l1",
     "edits": [("acp/sequences.py", "chosen = np.sort(rng.choice(len(members), size=count, replace=False))",
                "chosen = np.arange(count)")],
     "tests": ["tests/test_acp_architecture_counts.py"]},
]

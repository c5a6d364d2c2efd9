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
]

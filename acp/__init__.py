"""ACP: re-ranking with attention and contextual memory for re-ID (Zhou, Wang, Chau, IEEE TMM 2022)."""

import data  # noqa: F401  (first: sets TensorFlow's load-time defaults before anything loads it)

"""ACP: re-ranking with attention and contextual memory for re-ID (Zhou, Wang, Chau, IEEE TMM 2022)."""

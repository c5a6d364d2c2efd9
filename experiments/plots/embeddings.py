"""ACP Figs. 3 and 9: t-SNE of re-ID embeddings, coloured by identity, with each identity's centre (the mean of
its 2-D points) marked by a star.

- Fig. 3: the query + gallery embeddings of a test set before and after ACP's expansion (Eq. 1, p* = sum_j s_j f_j
  over the k1 nearest neighbours, `acp.acp_rerank.expand`): after, identities form tighter groups.
- Fig. 9: the training embeddings of a dataset (how well the baseline already separates its training set).

Embeddings are L2-normalised before t-SNE (the expansion's output is). `max_identities` identities are drawn at
random (the paper shows 5,000 of VERI-Wild's) to keep the plot readable.
"""
from __future__ import annotations

import numpy as np

from acp import acp_rerank
from acp import model as acp_model
from experiments import plots
from rerank.neighbours import l2_normalize


def choose_identities(pids: np.ndarray, max_identities: int, seed: int = 0) -> np.ndarray:
    """Row mask of `max_identities` identities drawn at random (all when there are fewer); distractors (pid 0)
    and junk (pid < 0) are left out."""
    identities = np.unique(pids[pids > 0]) if (pids > 0).any() else np.unique(pids)
    if len(identities) > max_identities:
        identities = np.random.default_rng(seed).choice(identities, max_identities, replace=False)
    return np.isin(pids, identities)


def expanded_embeddings(model, rows, k1: int, k2: int = acp_rerank.DEFAULT_K2, verbose: int = 0) -> np.ndarray:
    """Eq. 1 over the rows of a FeatureSet (`acp.acp_rerank.expand` with the model's inputs taken from it)."""
    names = [t.name for t in model.inputs if t.name not in (acp_model.MASK_NAME, acp_model.K2_NAME)]
    tables = {name: getattr(rows, name) for name in names}
    missing = [name for name, table in tables.items() if table is None]
    if missing:
        raise ValueError(f"{rows.origin} lacks {missing}, which this ACP model reads")
    return acp_rerank.expand(rows.embedding, tables, model, k1, k2, verbose=verbose)["expanded"]


def tsne(embeddings: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of L2-normalised `embeddings` (perplexity capped below the number of points)."""
    TSNE = plots.tsne_class()
    perplexity = min(perplexity, max(1.0, (len(embeddings) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        l2_normalize(np.asarray(embeddings, np.float32)))


def draw(panels, pids: np.ndarray, output: str, title: str = "", perplexity: float = 30.0, seed: int = 0) -> str:
    """One t-SNE panel per (title, embeddings [n, d]) of `panels` (rows matching `pids`), coloured by identity,
    centres starred; into `output`."""
    plt = plots.pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 5.0), squeeze=False)
    identities = np.unique(pids)
    colour_of = {pid: plt.cm.tab20(i % 20) for i, pid in enumerate(identities)}
    colours = [colour_of[pid] for pid in pids]
    for axis, (panel_title, embeddings) in zip(axes[0], panels):
        points = tsne(embeddings, perplexity, seed)
        axis.scatter(points[:, 0], points[:, 1], c=colours, s=6)
        centres = np.stack([points[pids == pid].mean(axis=0) for pid in identities])
        axis.scatter(centres[:, 0], centres[:, 1], c=[colour_of[pid] for pid in identities], marker="*", s=90,
                     edgecolors="black", linewidths=0.5)
        axis.set_title(panel_title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    return plots.save(figure, output)

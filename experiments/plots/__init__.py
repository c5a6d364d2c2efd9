"""Figures of both papers, drawn with matplotlib (the optional "plots" extra: `pip install .[plots]`, which also
brings scikit-learn for t-SNE). Each module draws one kind of figure into a PNG and returns its path:

| module | figures |
|---|---|
| `sweeps` | ACP Figs. 10-11 (CMC@1 and mAP versus k1 per method) and Fig. 12 (mAP versus k2), from the results CSV |
| `co_attention` | KVM-MN Figs. 1 and 3: co-attention maps of chosen heads at chosen reference locations |
| `memory_attention` | ACP Fig. 7: memory initialisation and refinement attention over a ranked list |
| `embeddings` | ACP Figs. 3 and 9: t-SNE of embeddings before and after the expansion of Eq. 1 |

matplotlib and scikit-learn are imported only when a figure is drawn; without them the error says how to install
them.
"""
from __future__ import annotations

from engine.atomic import atomic_path

INSTALL_HINT = "pip install 'reid-kvmmn-acp[plots]' (or: pip install matplotlib scikit-learn)"


class PlottingUnavailable(ImportError):
    """matplotlib (or scikit-learn for t-SNE) is not installed."""


def pyplot():
    """matplotlib.pyplot with the file-only Agg backend (servers have no display)."""
    try:
        import matplotlib
    except ImportError as error:
        raise PlottingUnavailable(f"figures need matplotlib, which is not installed: {INSTALL_HINT}") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tsne_class():
    """sklearn.manifold.TSNE (a clear PlottingUnavailable when scikit-learn is missing)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:
        raise PlottingUnavailable(f"t-SNE figures need scikit-learn, which is not installed: {INSTALL_HINT}") \
            from error
    return TSNE


def save(figure, path: str, dpi: int = 120) -> str:
    """Write `figure` as a PNG to `path` (atomically, folders created) and close it."""
    plt = pyplot()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)
    return path

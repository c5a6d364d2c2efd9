"""N/C, the first-order neighbourhood the ACP paper gives its re-ranker and, in Table IV, every method it compares:
gallery images per distinct gallery identity (ACP Sec. IV-B2; distractor identities count like any other).

Choice of ours (WORKSPACE.md lists it): a neighbourhood derived from N/C is at least MIN_K1 = 2. On a gallery of
one image per identity (CUHK03's single-shot protocol, VehicleID) N/C is 1, and a neighbourhood of the image alone
returns every embedding unchanged (ACP's Eq. 1, AQE, alpha-QE), i.e. the baseline. Two is the smallest
neighbourhood that re-ranks, and the size of a true match's group in such a gallery (the query and its one
gallery image). `k1_floor_note` says when the floor applies.
"""
from __future__ import annotations

import numpy as np

MIN_K1 = 2  # the smallest neighbourhood that changes anything (see the module docstring)


def images_per_identity(gallery_pids) -> float:
    """N/C: gallery images per distinct gallery identity (ACP Sec. IV-B2)."""
    gallery_pids = np.asarray(gallery_pids)
    if gallery_pids.size == 0:
        raise ValueError("N/C needs gallery identities, got an empty gallery")
    return len(gallery_pids) / len(np.unique(gallery_pids))


def default_k1(gallery_pids) -> int:
    """N/C (`images_per_identity`) rounded to the nearest integer, at least MIN_K1 (module docstring)."""
    return max(MIN_K1, int(round(images_per_identity(gallery_pids))))


def k1_floor_note(name: str, gallery_pids) -> str | None:
    """The line that says why parameter `name` is MIN_K1 rather than N/C, or None when N/C is at least MIN_K1."""
    ratio = images_per_identity(gallery_pids)
    if int(round(ratio)) >= MIN_K1:
        return None
    return (f"{name}={MIN_K1}: N/C of the gallery is {ratio:.2f} (about one image per identity), and a "
            f"neighbourhood of {int(round(ratio))} (the image itself) would leave every embedding unchanged, i.e. "
            f"return the baseline; raised to {MIN_K1}, the smallest that re-ranks")

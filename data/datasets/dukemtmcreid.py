"""DukeMTMC-reID (Zheng et al., ICCV 2017; from DukeMTMC, Ristani et al., ECCVW 2016), the official release.

The Market-1501 layout (`data.datasets.reid_layout`) under `DukeMTMC-reID/`, 8 cameras: 16,522 training images of 702
identities, 2,228 queries of 702 identities, and a gallery of 17,661 images of 1,110 identities (the 702 plus 408
distractor identities, which carry ordinary pids; there is no junk). Names are `PPPP_cC_fFFFFFFF.jpg`
(`0001_c2_f0046182.jpg`: identity, camera, frame). Protocol: `market1501`.
"""
from __future__ import annotations

from data.datasets import reid_layout

DATASET = reid_layout.MarketStyleDataset(
    name="dukemtmcreid", title="DukeMTMC-reID",
    folder_names=("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid", "dukemtmc-reid/DukeMTMC-reID"),
    naming=reid_layout.NamingScheme(tail=r"_f(\d+)", example="0001_c2_f0046182.jpg", num_cameras=8),
    official_counts={"train": (702, 16522, 8), "query": (702, 2228, 8), "gallery": (1110, 17661, 8)})

load = DATASET.load
eval_splits = reid_layout.fixed_split

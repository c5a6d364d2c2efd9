"""Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015), the official release.

Layout (`Market-1501-v15.09.15/`): `bounding_box_train/` (12,936 images of 751 identities), `query/` (3,368 images of
750 identities) and `bounding_box_test/` (19,732 images: the 750 test identities, distractors with pid 0 and 3,819
junk images with pid -1), 6 cameras. Names are `PPPP_cCsS_FFFFFF_BB.jpg`: identity, camera, sequence, frame,
bounding box (`0002_c1s1_000451_03.jpg`, junk `-1_c1s1_000401_03.jpg`).

Junk is dropped, so the gallery holds 15,913 images of 751 "identities" (the 750 plus the distractor pid 0): the
counts of the dataset papers and of Table I of the ACP paper. Protocol: `market1501` in `data.evaluation`.
"""
from __future__ import annotations

from data.datasets import reid_layout

NAMING = reid_layout.NamingScheme(tail=r"s(\d+)_(\d+)_(\d+)", example="0002_c1s1_000451_03.jpg",
                                  num_cameras=6, max_pid=1501)
DATASET = reid_layout.MarketStyleDataset(
    name="market1501", title="Market-1501",
    folder_names=("Market-1501-v15.09.15", "Market-1501", "market1501", "market1501/Market-1501-v15.09.15"),
    naming=NAMING,
    official_counts={"train": (751, 12936, 6), "query": (750, 3368, 6), "gallery": (751, 15913, 6)})

load = DATASET.load
eval_splits = reid_layout.fixed_split

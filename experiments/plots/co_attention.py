"""KVM-MN Figs. 1 and 3: where each head of the co-attention looks, in the probe A and in the gallery image B, for a
reference location of A (Eq. 3; `kvmmn.model.KVMMN.attention_maps`).

One figure row per reference location: image A with the location marked, then for every chosen head its
attention over A and over B, drawn as a heat map over the image (the L = rows x cols feature-map cells stretched
over the image; the weights of one map sum to 1).
"""
from __future__ import annotations

import numpy as np

from data.pipeline import PRESETS, normalize, read_image, resize
from experiments import plots

NORMALIZATION = PRESETS["kvmmn"][1]


def display_image(path: str, image_size) -> np.ndarray:
    """The image at `path` resized to `image_size` (height, width), uint8 RGB, as the network sees it."""
    return np.clip(resize(read_image(path), image_size).numpy(), 0, 255).astype(np.uint8)


def parse_location(text: str, feature_shape) -> tuple[int, int]:
    """"row:col" -> (row, col) inside a feature map of `feature_shape`; ValueError naming the text otherwise."""
    rows, cols = feature_shape
    try:
        row, col = (int(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"reference location {text!r}: expected ROW:COL, e.g. 4:3") from None
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"reference location {text!r} is outside the {rows}x{cols} feature map")
    return row, col


def attention_maps(model, path_a: str, path_b: str, locations) -> tuple[np.ndarray, np.ndarray]:
    """Co-attention of every head at each reference location: (maps over A, maps over B), each
    [len(locations), H, rows, cols]."""
    size = model.config.image_size
    images = np.stack([normalize(resize(read_image(p), size), NORMALIZATION).numpy() for p in (path_a, path_b)])
    memory = model.embed(images)
    first = {name: value[:1] for name, value in memory.items()}
    second = {name: value[1:] for name, value in memory.items()}
    pairs = [model.attention_maps(first, second, location) for location in locations]
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])


def draw(path_a: str, path_b: str, maps_a: np.ndarray, maps_b: np.ndarray, locations, heads, image_size,
         output: str) -> str:
    """The figure (see the module docstring) of precomputed maps ([locations, H, rows, cols]) into `output`."""
    plt = plots.pyplot()
    image_a, image_b = display_image(path_a, image_size), display_image(path_b, image_size)
    height, width = image_size
    rows, cols = maps_a.shape[-2:]
    columns = 1 + 2 * len(heads)
    figure, axes = plt.subplots(len(locations), columns, figsize=(1.3 * columns, 2.6 * len(locations)),
                                squeeze=False)
    extent = (0, width, height, 0)
    for r, (row, col) in enumerate(locations):
        axis = axes[r][0]
        axis.imshow(image_a)
        axis.plot((col + 0.5) * width / cols, (row + 0.5) * height / rows, "o", color="red", markersize=7,
                  markeredgecolor="white")
        axis.set_title(f"A, ({row}, {col})", fontsize=8)
        for i, head in enumerate(heads):
            for j, (image, maps, side) in enumerate(((image_a, maps_a, "A"), (image_b, maps_b, "B"))):
                axis = axes[r][1 + 2 * i + j]
                axis.imshow(image)
                axis.imshow(maps[r, head], cmap="jet", alpha=0.5, extent=extent, interpolation="bilinear")
                axis.set_title(f"head {head + 1}: {side}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("KVM-MN co-attention (Figs. 1, 3)", fontsize=10)
    return plots.save(figure, output)

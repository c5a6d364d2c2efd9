"""What the synthetic people and cameras look like: seeded draws of appearance attributes, look-alike groups and
per-camera imaging conditions. `data.synthetic.render` turns them into pixels.

Look-alike groups make ranking non-trivial: the members of a group share one prototype, its colours included, and
each differs from it in a couple of details that keep the colours (the top's pattern, the cut of the trousers, the
sleeves, the hair, which shoulder the bag hangs from) and in its body, as people in similar clothes do in street
scenes. A colour histogram cannot tell them apart; a model that looks at shapes and parts can. (Generator
version 1 also changed shades and accessories, which let colour histograms separate most look-alikes and made them
a stronger baseline on this world than the learned models of the demo: 29.8% mAP.)
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

# Clothing colours people actually wear (RGB), dark and neutral ones listed more than once so they are drawn more
# often, as in street scenes.
CLOTHING = np.array([
    (25, 25, 28), (25, 25, 28), (60, 60, 66), (60, 60, 66), (128, 128, 128), (225, 225, 220), (225, 225, 220),
    (30, 40, 90), (30, 40, 90), (40, 80, 170), (110, 160, 215), (170, 30, 35), (100, 25, 35), (40, 110, 50),
    (100, 105, 50), (220, 190, 50), (220, 120, 40), (220, 130, 160), (100, 50, 130), (100, 65, 40),
    (200, 180, 140), (160, 145, 100), (30, 120, 120),
], dtype=np.float32)
SKIN = np.array([(240, 200, 170), (225, 180, 140), (200, 150, 110), (160, 110, 75), (110, 75, 50)], np.float32)
HAIR = np.array([(20, 15, 12), (55, 35, 20), (110, 75, 40), (190, 160, 100), (150, 150, 150)], np.float32)
UPPER_PATTERNS = ("solid", "solid", "hstripes", "vstripes", "checks", "twotone", "logo", "jacket")
LOWER_KINDS = ("trousers", "trousers", "trousers", "shorts", "skirt")
LOWER_PATTERNS = ("solid", "solid", "sidestripe", "denim")
VIEWS = ("front", "back", "side")


@dataclasses.dataclass(frozen=True)
class Person:
    """Appearance of one identity. Colours are RGB float triples; lengths are fractions of the person's height."""

    skin: tuple
    hair: tuple
    long_hair: bool
    height: float          # of the image height, before per-image scaling
    build: float           # shoulder width factor
    head: float            # head size factor
    upper: tuple           # main colour of the top
    upper_second: tuple    # pattern colour of the top
    upper_pattern: str
    long_sleeves: bool
    lower: tuple
    lower_second: tuple
    lower_kind: str
    lower_pattern: str
    shoes: tuple
    hat: tuple | None = None
    bag: tuple | None = None        # colour; carried on `bag_side`
    bag_side: int = 1               # +1 right, -1 left (seen from the front)
    backpack: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Camera:
    """Imaging conditions of one camera: what it sees, from where, and with which optics and light."""

    view_weights: tuple     # probabilities of seeing a track from the front, back and side
    sky: tuple              # background colour at the top
    wall: tuple             # background colour above the horizon
    floor: tuple            # ground colour
    horizon: float          # fraction of the image height where the ground starts
    structures: tuple       # ((x centre, width, colour), ...) pillars, doors, windows, as fractions of the width
    texture: float          # background noise amplitude
    scale: float            # person height relative to the frame
    gain: float             # overall illumination
    cast: tuple             # per-channel colour cast (white balance)
    contrast: float
    light_slope: float      # left-to-right illumination gradient
    blur: float             # Gaussian sigma at the output resolution
    noise: float            # sensor noise sigma (0..255 scale)
    occlusion: float        # probability that an image is partially occluded


def _colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> tuple:
    base = palette[rng.integers(len(palette))]
    return tuple(np.clip(base + rng.normal(0.0, jitter, 3), 0, 255).round(1).tolist())


def _maybe(rng: np.random.Generator, probability: float, make: Callable[[], tuple]) -> tuple | None:
    return make() if rng.random() < probability else None


def random_person(rng: np.random.Generator) -> Person:
    """An identity drawn from the appearance model."""
    cloth = lambda: _colour(rng, CLOTHING, 14.0)  # noqa: E731
    return Person(
        skin=_colour(rng, SKIN, 6.0), hair=_colour(rng, HAIR, 8.0), long_hair=bool(rng.random() < 0.35),
        height=float(rng.uniform(0.84, 0.95)), build=float(rng.uniform(0.82, 1.2)),
        head=float(rng.uniform(0.9, 1.1)),
        upper=cloth(), upper_second=cloth(), upper_pattern=str(rng.choice(UPPER_PATTERNS)),
        long_sleeves=bool(rng.random() < 0.6),
        lower=cloth(), lower_second=cloth(), lower_kind=str(rng.choice(LOWER_KINDS)),
        lower_pattern=str(rng.choice(LOWER_PATTERNS)), shoes=cloth(),
        hat=_maybe(rng, 0.2, cloth), bag=_maybe(rng, 0.3, cloth), bag_side=int(rng.choice((-1, 1))),
        backpack=_maybe(rng, 0.25, cloth))


def _shade(colour: tuple, rng: np.random.Generator, amount: float) -> tuple:
    return tuple(np.clip(np.asarray(colour) + rng.normal(0.0, amount, 3), 0, 255).round(1).tolist())


def _other(options: tuple, current: str, rng: np.random.Generator) -> str:
    return str(rng.choice([x for x in options if x != current]))


# One small change each, none of them a new colour; a look-alike differs from its group's prototype by two of them.
_DETAILS: dict[str, Callable[[Person, np.random.Generator], dict]] = {
    "upper_pattern": lambda p, rng: {"upper_pattern": _other(UPPER_PATTERNS, p.upper_pattern, rng)},
    "lower_kind": lambda p, rng: {"lower_kind": _other(LOWER_KINDS, p.lower_kind, rng)},
    "lower_pattern": lambda p, rng: {"lower_pattern": _other(LOWER_PATTERNS, p.lower_pattern, rng)},
    "sleeves": lambda p, rng: {"long_sleeves": not p.long_sleeves},
    "hair_length": lambda p, rng: {"long_hair": not p.long_hair},
    # the bag to the other shoulder; without a bag, the top's pattern changes instead
    "bag_side": lambda p, rng: ({"bag_side": -p.bag_side} if p.bag else
                                {"upper_pattern": _other(UPPER_PATTERNS, p.upper_pattern, rng)}),
}


def look_alike(prototype: Person, rng: np.random.Generator, num_details: int = 2) -> Person:
    """A different identity that shares `prototype`'s look except for `num_details` details and its body."""
    changes = {"height": float(np.clip(prototype.height + rng.normal(0.0, 0.02), 0.82, 0.97)),
               "build": float(np.clip(prototype.build + rng.normal(0.0, 0.05), 0.8, 1.22))}
    for name in rng.choice(sorted(_DETAILS), size=num_details, replace=False):
        changes.update(_DETAILS[name](prototype, rng))
    return dataclasses.replace(prototype, **changes)


def random_camera(rng: np.random.Generator) -> Camera:
    """A camera with its own viewpoint habits, scene, light, white balance and optics."""
    dominant = rng.integers(len(VIEWS))
    weights = np.full(len(VIEWS), 0.2)
    weights[dominant] = 0.6
    # Scenes are muted: half way between a random colour and grey.
    wall = tuple((0.5 * np.asarray(_colour(rng, CLOTHING, 30.0)) + 64.0).round(1).tolist())
    structures = tuple((float(rng.uniform(0, 1)), float(rng.uniform(0.08, 0.35)), _shade(wall, rng, 35.0))
                       for _ in range(int(rng.integers(1, 4))))
    return Camera(
        view_weights=tuple(weights.tolist()), sky=_shade(wall, rng, 25.0), wall=wall,
        floor=_colour(rng, CLOTHING[[2, 4, 5, 19, 20, 21]], 20.0), horizon=float(rng.uniform(0.45, 0.75)),
        structures=structures, texture=float(rng.uniform(2.0, 12.0)), scale=float(rng.uniform(0.88, 1.0)),
        gain=float(rng.uniform(0.65, 1.3)), cast=tuple(rng.uniform(0.82, 1.18, 3).round(3).tolist()),
        contrast=float(rng.uniform(0.75, 1.1)), light_slope=float(rng.uniform(-0.3, 0.3)),
        blur=float(rng.uniform(0.0, 1.0)), noise=float(rng.uniform(1.0, 6.0)),
        occlusion=float(rng.uniform(0.1, 0.35)))

"""Drawing synthetic pedestrians with OpenCV and numpy: a person on a camera's scene, then the camera's viewpoint
(mirroring, shift, scale, detector crop), occlusion, illumination and colour cast, blur and noise.

People are drawn at twice the output resolution with anti-aliased primitives and reduced with area averaging, so
that thin details (straps, stripes, shoes) survive as mixed pixels the way they do in real 128x64 crops.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import cv2
import numpy as np

from data.synthetic.people import CLOTHING, SKIN, VIEWS, Camera, Person

SUPERSAMPLE = 2
_SHIFT = 4  # fixed-point bits for sub-pixel coordinates in cv2 drawing calls
_ONE = 1 << _SHIFT


@dataclasses.dataclass(frozen=True)
class Track:
    """What stays fixed while one camera follows one person: walking direction and distance."""

    view: str
    mirror: bool
    scale: float
    shift: float


def random_track(camera: Camera, rng: np.random.Generator) -> Track:
    """A track of a camera: the view follows the camera's habits, scale and position vary per track."""
    return Track(view=str(rng.choice(VIEWS, p=camera.view_weights)), mirror=bool(rng.random() < 0.5),
                 scale=float(camera.scale * rng.uniform(0.92, 1.05)), shift=float(rng.uniform(-0.08, 0.08)))


class _Painter:
    """An RGB layer with coverage, painted with anti-aliased primitives; each touches only its bounding box."""

    def __init__(self, height: int, width: int):
        self.rgb = np.zeros((height, width, 3), np.float32)
        self.alpha = np.zeros((height, width), np.float32)
        self._mask = np.zeros((height, width), np.uint8)

    def _paint(self, box: tuple[float, float, float, float], draw: Callable[[np.ndarray], None], fill) -> None:
        height, width = self._mask.shape
        x0, y0 = max(int(box[0]) - 2, 0), max(int(box[1]) - 2, 0)
        x1, y1 = min(int(np.ceil(box[2])) + 3, width), min(int(np.ceil(box[3])) + 3, height)
        if x0 >= x1 or y0 >= y1:
            return
        rows, cols = slice(y0, y1), slice(x0, x1)
        draw(self._mask)
        coverage = self._mask[rows, cols].astype(np.float32) * (1.0 / 255.0)
        self._mask[rows, cols] = 0
        colour = fill(rows, cols) if callable(fill) else np.asarray(fill, np.float32)
        region = self.rgb[rows, cols]
        region += (colour - region) * coverage[..., None]
        np.maximum(self.alpha[rows, cols], coverage, out=self.alpha[rows, cols])

    def polygon(self, points, fill) -> None:
        points = np.asarray(points, np.float64)
        fixed = np.round(points * _ONE).astype(np.int32)
        self._paint((*points.min(0), *points.max(0)),
                    lambda m: cv2.fillPoly(m, [fixed], 255, cv2.LINE_AA, _SHIFT), fill)

    def ellipse(self, centre, axes, fill) -> None:
        (cx, cy), (ax, ay) = centre, axes
        self._paint((cx - ax, cy - ay, cx + ax, cy + ay),
                    lambda m: cv2.ellipse(m, (round(cx * _ONE), round(cy * _ONE)),
                                          (max(round(ax * _ONE), 1), max(round(ay * _ONE), 1)),
                                          0, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT), fill)

    def line(self, start, end, thickness: float, fill) -> None:
        # Thick cv2 lines have round caps: limbs without seams at the joints.
        (x0, y0), (x1, y1), half = start, end, thickness / 2
        self._paint((min(x0, x1) - half, min(y0, y1) - half, max(x0, x1) + half, max(y0, y1) + half),
                    lambda m: cv2.line(m, (round(x0 * _ONE), round(y0 * _ONE)), (round(x1 * _ONE), round(y1 * _ONE)),
                                       255, max(round(thickness), 1), cv2.LINE_AA, _SHIFT), fill)


class _Body:
    """Maps body coordinates (fractions of the person's height; x from the body axis, y from the top of the head)
    to canvas pixels, and holds the person's pattern textures."""

    def __init__(self, person: Person, centre_x: float, feet_y: float, pixel_height: float, view: str,
                 rng: np.random.Generator):
        self.person, self.view, self.rng = person, view, rng
        self.cx, self.top, self.ph = centre_x, feet_y - pixel_height, pixel_height

    def at(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + x * self.ph, self.top + y * self.ph

    def pts(self, points) -> list[tuple[float, float]]:
        return [self.at(x, y) for x, y in points]

    def grid(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Body coordinates of a canvas window (y as a column, x as a row, for broadcasting)."""
        y = (np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] - self.top) / self.ph
        x = (np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] - self.cx) / self.ph
        return x, y

    def upper_texture(self, rows: slice, cols: slice) -> np.ndarray:
        p = self.person
        first, second = np.asarray(p.upper, np.float32), np.asarray(p.upper_second, np.float32)
        x, y = self.grid(rows, cols)
        pattern = p.upper_pattern
        if pattern == "hstripes":
            use_second = np.floor(y / 0.035) % 2 == 1
        elif pattern == "vstripes":
            use_second = np.floor(x / 0.03) % 2 == 1
        elif pattern == "checks":
            use_second = (np.floor(y / 0.04) + np.floor(x / 0.04)) % 2 == 1
        elif pattern == "twotone":
            use_second = y < 0.3
        else:  # solid, and logo / jacket whose second colour is drawn as a separate shape
            return first
        use_second = np.broadcast_to(use_second, (y.shape[0], x.shape[1]))
        return np.where(use_second[..., None], second, first)

    def lower_texture(self, rows: slice, cols: slice) -> np.ndarray | tuple:
        p = self.person
        if p.lower_pattern != "denim":
            return p.lower
        height, width = rows.stop - rows.start, cols.stop - cols.start
        grain = self.rng.normal(0.0, 10.0, (height, width, 1)).astype(np.float32)
        return np.asarray(p.lower, np.float32) + grain


def draw_person(painter: _Painter, body: _Body, phase: float) -> None:
    """Paint `body.person` seen from `body.view` at walking phase `phase` (radians), back to front."""
    p, view = body.person, body.view
    side = view == "side"
    shoulder = (0.075 if side else 0.125) * p.build
    waist = (0.07 if side else 0.1) * p.build
    hip = (0.075 if side else 0.105) * p.build
    limb = 0.075 * p.build
    arm = 0.05 * p.build
    head_x, head_y = (0.058 if side else 0.052) * p.head, 0.068 * p.head
    swing = np.sin(phase)
    # Seen from the front, the person's right side is on the viewer's left.
    bag_x = -p.bag_side if view == "front" else p.bag_side

    if p.long_hair and view != "back":
        painter.polygon(body.pts([(-head_x * 1.1, 0.06), (head_x * 1.1, 0.06), (head_x * 1.1, 0.21),
                                  (-head_x * 1.1, 0.21)]), p.hair)
    if p.backpack and side:
        painter.polygon(body.pts([(-shoulder - 0.075, 0.2), (-shoulder + 0.01, 0.19), (-shoulder + 0.01, 0.47),
                                  (-shoulder - 0.07, 0.46)]), p.backpack)

    # Legs and the lower garment.
    if side:
        feet = [(0.09 * swing, 0.94), (-0.09 * swing, 0.94)]
        hips = [(0.0, 0.54), (0.0, 0.54)]
    else:
        feet = [(-0.055 * p.build, 0.94 - 0.01 * max(swing, 0)), (0.055 * p.build, 0.94 - 0.01 * max(-swing, 0))]
        hips = [(-0.05 * p.build, 0.54), (0.05 * p.build, 0.54)]
    covered = {"trousers": 1.0, "shorts": 0.35, "skirt": 0.0}[p.lower_kind]
    for (hx, hy), (fx, fy) in zip(hips, feet):
        hem = (hx + (fx - hx) * covered, hy + (fy - hy) * covered)
        painter.line(body.at(hx, hy), body.at(fx, fy), limb * body.ph * 0.85, p.skin)
        if covered:
            painter.line(body.at(hx, hy), body.at(*hem), limb * body.ph, body.lower_texture)
            if p.lower_pattern == "sidestripe":
                offset = 0.02 if side else 0.028 * np.sign(hx)
                painter.line(body.at(hx + offset, hy), body.at(hem[0] + offset, hem[1]), 0.012 * body.ph,
                             p.lower_second)
        shoe_forward = 0.03 if side else 0.0
        painter.ellipse(body.at(fx + shoe_forward, fy + 0.025), (0.05 * body.ph if side else 0.035 * body.ph,
                                                                  0.022 * body.ph), p.shoes)
    if p.lower_kind == "skirt":
        painter.polygon(body.pts([(-hip, 0.48), (hip, 0.48), (hip * 1.5, 0.72), (-hip * 1.5, 0.72)]),
                        body.lower_texture)
    else:
        painter.polygon(body.pts([(-hip, 0.48), (hip, 0.48), (hip, 0.6), (-hip, 0.6)]), body.lower_texture)

    # Torso, its pattern, arms.
    painter.line(body.at(0, 0.12), body.at(0, 0.18), 0.05 * body.ph, p.skin)
    painter.polygon(body.pts([(-shoulder, 0.17), (shoulder, 0.17), (waist, 0.52), (-waist, 0.52)]),
                    body.upper_texture)
    for sx in ((0.0,) if side else (-1.0, 1.0)):
        painter.ellipse(body.at(sx * (shoulder - 0.02), 0.195), (0.035 * body.ph, 0.03 * body.ph), p.upper)
    if view == "front" and p.upper_pattern == "logo":
        painter.ellipse(body.at(0.02, 0.28), (0.04 * body.ph, 0.04 * body.ph), p.upper_second)
    if view == "front" and p.upper_pattern == "jacket":
        painter.polygon(body.pts([(-shoulder * 0.3, 0.175), (shoulder * 0.3, 0.175), (waist * 0.3, 0.52),
                                  (-waist * 0.3, 0.52)]), p.upper_second)
    if p.backpack and view == "back":
        painter.polygon(body.pts([(-shoulder * 0.75, 0.21), (shoulder * 0.75, 0.21), (shoulder * 0.72, 0.47),
                                  (-shoulder * 0.72, 0.47)]), p.backpack)
        painter.polygon(body.pts([(-shoulder * 0.5, 0.36), (shoulder * 0.5, 0.36), (shoulder * 0.5, 0.45),
                                  (-shoulder * 0.5, 0.45)]), tuple(0.7 * c for c in p.backpack))
    if p.backpack and view == "front":
        for sx in (-1.0, 1.0):
            painter.line(body.at(sx * shoulder * 0.55, 0.17), body.at(sx * shoulder * 0.6, 0.4), 0.018 * body.ph,
                         tuple(0.6 * c for c in p.backpack))
    arms = [(0.0, 0.08 * swing)] if side else [(-1.0, 0.0), (1.0, 0.0)]
    for sx, forward in arms:
        start = (sx * shoulder * 0.92, 0.19)
        elbow = (sx * (shoulder + 0.015) + forward * 0.5, 0.34)
        hand = (sx * (shoulder + 0.02) + forward, 0.49)
        painter.line(body.at(*start), body.at(*elbow), arm * body.ph, p.upper)
        painter.line(body.at(*elbow), body.at(*hand), arm * body.ph * 0.9, p.upper if p.long_sleeves else p.skin)
        painter.ellipse(body.at(*hand), (0.022 * body.ph, 0.024 * body.ph), p.skin)
    if p.bag:
        bx = 0.0 if side else bag_x * (shoulder + 0.045)
        if not side:
            painter.line(body.at(-bag_x * shoulder * 0.6, 0.18), body.at(bx, 0.44), 0.012 * body.ph,
                         tuple(0.7 * c for c in p.bag))
        painter.polygon(body.pts([(bx - 0.05, 0.44), (bx + 0.05, 0.44), (bx + 0.055, 0.57), (bx - 0.055, 0.57)]),
                        p.bag)

    # Head: face, hair, hat.
    painter.ellipse(body.at(0, 0.075), (head_x * body.ph, head_y * body.ph), p.hair if view == "back" else p.skin)
    if view == "front":
        painter.ellipse(body.at(0, 0.045), (head_x * 1.04 * body.ph, head_y * 0.62 * body.ph), p.hair)
    elif side:
        painter.ellipse(body.at(-0.015, 0.06), (head_x * 0.85 * body.ph, head_y * 0.85 * body.ph), p.hair)
    if p.long_hair and view == "back":
        painter.polygon(body.pts([(-head_x, 0.08), (head_x, 0.08), (head_x * 1.1, 0.25), (-head_x * 1.1, 0.25)]),
                        p.hair)
    if p.hat:
        painter.ellipse(body.at(0, 0.035), (head_x * 1.1 * body.ph, head_y * 0.6 * body.ph), p.hat)
        if view == "front":
            painter.ellipse(body.at(0, 0.06), (head_x * 1.25 * body.ph, 0.012 * body.ph), p.hat)
        elif side:
            painter.line(body.at(0, 0.06), body.at(head_x * 1.8, 0.065), 0.014 * body.ph, p.hat)


def _background(camera: Camera, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    horizon = int(height * np.clip(camera.horizon + rng.normal(0, 0.02), 0.3, 0.85))
    image = np.empty((height, width, 3), np.float32)
    t = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None, None]
    image[:horizon] = (1 - t) * np.asarray(camera.sky, np.float32) + t * np.asarray(camera.wall, np.float32)
    t = np.linspace(1.0, 0.75, height - horizon, dtype=np.float32)[:, None, None]
    image[horizon:] = np.asarray(camera.floor, np.float32) * t
    pan = rng.uniform(-0.1, 0.1)
    for x, w, colour in camera.structures:
        x0, x1 = int((x + pan - w / 2) * width), int((x + pan + w / 2) * width)
        image[: horizon, max(x0, 0): max(x1, 0)] = colour
    coarse = rng.normal(0.0, camera.texture, (8, 4, 3)).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return image


def _occlude(image: np.ndarray, centre_x: float, rng: np.random.Generator) -> None:
    """Paint a pole, a low object (car, bench, railing) or a passer-by over part of the person."""
    height, width = image.shape[:2]
    colour = CLOTHING[rng.integers(len(CLOTHING))] + rng.normal(0, 15, 3)
    kind = rng.integers(3)
    if kind == 0:
        w = rng.uniform(0.07, 0.16) * width
        x0 = int(centre_x + rng.uniform(-0.25, 0.25) * width - w / 2)
        image[:, max(x0, 0): max(int(x0 + w), 0)] = colour
    elif kind == 1:
        y0 = int(rng.uniform(0.68, 0.86) * height)
        image[y0:] = colour
        image[y0: y0 + max(height // 64, 1)] = np.clip(colour * 1.4 + 30, 0, 255)
    else:
        painter = _Painter(height, width)
        x = width * (0.0 if rng.random() < 0.5 else 1.0) + rng.normal(0, 0.05 * width)
        painter.ellipse((x, 0.2 * height), (0.09 * width, 0.07 * height), tuple(SKIN[rng.integers(len(SKIN))]))
        painter.polygon([(x - 0.22 * width, 0.28 * height), (x + 0.22 * width, 0.28 * height),
                         (x + 0.2 * width, height), (x - 0.2 * width, height)], tuple(colour))
        image += (painter.rgb - image) * painter.alpha[..., None]


def _finish(image: np.ndarray, camera: Camera, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The camera at the output resolution: area downscale, light and white balance, blur, noise, 8 bits."""
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ramp = 1.0 + camera.light_slope * np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :, None]
    gain = np.float32(camera.gain * rng.uniform(0.9, 1.1)) * np.asarray(camera.cast, np.float32)
    image = ((image - 127.5) * np.float32(camera.contrast) + 127.5) * gain * ramp
    sigma = camera.blur * rng.uniform(0.6, 1.4)
    if sigma > 0.25:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < 0.1:  # motion blur of a walking person
        image = cv2.blur(image, (3, 1))
    image += rng.normal(0.0, camera.noise, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).round().astype(np.uint8)


def render(person: Person, camera: Camera, track: Track, rng: np.random.Generator, height: int,
           width: int) -> np.ndarray:
    """One RGB uint8 image (height x width) of `person` in `camera` during `track`."""
    canvas_h, canvas_w = height * SUPERSAMPLE, width * SUPERSAMPLE
    image = _background(camera, canvas_h, canvas_w, rng)
    pixel_height = canvas_h * person.height * track.scale * rng.uniform(0.96, 1.03)
    centre_x = canvas_w * (0.5 + track.shift + rng.normal(0, 0.02))
    feet_y = canvas_h * rng.uniform(0.96, 1.0)
    shadow = np.zeros((canvas_h, canvas_w), np.float32)
    cv2.ellipse(shadow, (int(centre_x), int(feet_y)), (int(0.17 * pixel_height), int(0.03 * pixel_height)),
                0, 0, 360, 0.35, -1)
    image *= 1.0 - shadow[..., None]

    painter = _Painter(canvas_h, canvas_w)
    body = _Body(person, centre_x, feet_y, pixel_height, track.view, rng)
    draw_person(painter, body, phase=rng.uniform(0, 2 * np.pi))
    # Cylinder shading: the body's sides turn away from the light.
    across = (np.arange(canvas_w, dtype=np.float32) - centre_x) / (0.17 * pixel_height)
    painter.rgb *= (1.0 - 0.3 * np.minimum(across * across, 1.0))[None, :, None]
    image += (painter.rgb - image) * painter.alpha[..., None]

    if rng.random() < camera.occlusion:
        _occlude(image, centre_x, rng)
    if track.mirror:
        image = image[:, ::-1]
    # A detector's box is never exactly around the person: cut a little from each side (stretched back by _finish).
    top, bottom, left, right = rng.uniform(0.0, 0.06, 4)
    image = image[int(top * canvas_h): canvas_h - int(bottom * canvas_h),
                  int(left * canvas_w): canvas_w - int(right * canvas_w)]
    return _finish(np.ascontiguousarray(image), camera, height, width, rng)


def render_junk(person: Person, camera: Camera, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A bad detection (Market-1501's pid -1): a fragment of a person, or only the scene."""
    if rng.random() < 0.5:
        return _finish(_background(camera, height * SUPERSAMPLE, width * SUPERSAMPLE, rng), camera, height, width,
                       rng)
    image = render(person, camera, random_track(camera, rng), rng, height, width)
    h, w = int(height * rng.uniform(0.3, 0.5)), int(width * rng.uniform(0.4, 0.7))
    y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    return cv2.resize(image[y: y + h, x: x + w], (width, height), interpolation=cv2.INTER_LINEAR)

"""Real JPEG frames for the content tests, generated with Pillow: scenes and their near-duplicates.

A scene is a flat-colour picture drawn from a seed (a sky gradient, ellipses, rectangles, lines); the same seed
gives the same picture. Its near-duplicates: re-encoded at another quality, cropped by a few pixels; a
different seed is a truly different picture.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

SIZE = (320, 180)


def scene(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    """A random flat-colour picture, the same for the same seed."""
    rnd = random.Random(seed)
    w, h = size
    top = tuple(rnd.randrange(256) for _ in range(3))
    bottom = tuple(rnd.randrange(256) for _ in range(3))
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(h):
        f = y / max(h - 1, 1)
        draw.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * f) for a, b in zip(top, bottom, strict=True)))
    for _ in range(rnd.randrange(5, 12)):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        box = [x0, y0, x0 + rnd.randrange(20, w // 2), y0 + rnd.randrange(20, h // 2)]
        colour = tuple(rnd.randrange(256) for _ in range(3))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """The picture as JPEG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def cropped(image: Image.Image, pixels: int = 3) -> Image.Image:
    """`pixels` cut off each side and scaled back to the size."""
    w, h = image.size
    return image.crop((pixels, pixels, w - pixels, h - pixels)).resize((w, h), Image.Resampling.BILINEAR)


def scene_jpeg(seed: int, variant: str = "original") -> bytes:
    """Scene `seed` as JPEG: `original` (q90), `reencoded` (q55), `cropped` (3 px off each side, q85)."""
    image = scene(seed)
    if variant == "original":
        return jpeg(image, 90)
    if variant == "reencoded":
        return jpeg(image, 55)
    if variant == "cropped":
        return jpeg(cropped(image), 85)
    raise ValueError(variant)

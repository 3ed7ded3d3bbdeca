"""Generated pictures with known near-duplicates, for measuring the perceptual hash (bench_content.py).

A "scene" is a random cartoon-like picture (a gradient sky, ellipses, rectangles and a line or two, in flat
colours, as animation frames are); its variants are the same scene re-encoded, resized, brightness-shifted or
cropped by a few pixels; another scene is a truly different picture.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageEnhance

SIZE = (640, 360)


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
    for _ in range(rnd.randrange(4, 12)):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = x0 + rnd.randrange(20, w // 2), y0 + rnd.randrange(20, h // 2)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        if rnd.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
    for _ in range(rnd.randrange(1, 4)):
        points = [(rnd.randrange(w), rnd.randrange(h)) for _ in range(2)]
        draw.line(points, fill=tuple(rnd.randrange(256) for _ in range(3)), width=rnd.randrange(2, 8))
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    """The picture as JPEG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def reencoded(image: Image.Image, quality: int = 60) -> Image.Image:
    """Decoded again after a JPEG at `quality`."""
    return Image.open(io.BytesIO(jpeg(image, quality))).convert("RGB")


def resized(image: Image.Image, factor: float = 0.5) -> Image.Image:
    """Scaled by `factor` (a smaller rendition, e.g. mid_res from high_res)."""
    w, h = image.size
    return image.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.BILINEAR)


def brightened(image: Image.Image, factor: float = 1.2) -> Image.Image:
    """Brightness times `factor`."""
    return ImageEnhance.Brightness(image).enhance(factor)


def cropped(image: Image.Image, pixels: int = 4) -> Image.Image:
    """`pixels` cut off each side, scaled back to the size."""
    w, h = image.size
    return image.crop((pixels, pixels, w - pixels, h - pixels)).resize((w, h), Image.Resampling.BILINEAR)


VARIANTS = {
    "re-encoded q60": lambda im: reencoded(im, 60),
    "re-encoded q30": lambda im: reencoded(im, 30),
    "resized 1/2": lambda im: resized(im, 0.5),
    "resized 1/4": lambda im: resized(im, 0.25),
    "brightness +20%": lambda im: brightened(im, 1.2),
    "brightness -20%": lambda im: brightened(im, 0.8),
    "cropped 4 px": lambda im: cropped(im, 4),
    "cropped 16 px": lambda im: cropped(im, 16),
}

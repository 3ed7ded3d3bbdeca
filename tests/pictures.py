"""Real JPEG frames for the content tests, generated with Pillow: scenes and their near-duplicates.

A scene is a flat-colour picture drawn from a seed (a sky gradient, ellipses, rectangles, lines); the same seed
gives the same picture. Its near-duplicates: re-encoded at another quality, cropped by a few pixels; a
different seed is a truly different picture.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw
from season import frame_number, sheet_rows, source_key, upload_season

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


RARITY_CYCLE = ["Common", "Rare", "Trash", "Uncommon", "Common", "Legendary", "Common"]

#: (episode, frame index) -> (group, scene seed, variant); a group is a set of near-duplicate pictures
LAYOUT: dict[tuple[str, int], tuple[str, int, str]] = {}
for _episode in ("S01E01", "S01E02"):
    for _index in range(5):  # the title sequence: the same picture, every other frame re-encoded
        LAYOUT[(_episode, _index)] = ("title", 0, "reencoded" if _index % 2 else "original")
LAYOUT[("S01E01", 5)] = ("shot1", 1, "original")
LAYOUT[("S01E01", 6)] = ("shot1", 1, "cropped")
LAYOUT[("S01E01", 7)] = ("shot1", 1, "reencoded")
LAYOUT[("S01E02", 5)] = ("shot2", 2, "original")
LAYOUT[("S01E02", 6)] = ("shot2", 2, "cropped")
_seed = 3
for _episode in ("S01E01", "S01E02"):
    for _index in range(8, 17):
        LAYOUT[(_episode, _index)] = (f"unique{_seed}", _seed, "original")
        _seed += 1


def upload_leaky_season(bucket) -> None:
    """S01E01 and S01E02 as LAYOUT says: sheets (rarities cycling), manifest, and the JPEG sources."""
    sheets = {}
    for episode in ("S01E01", "S01E02"):
        indexes = sorted(i for e, i in LAYOUT if e == episode)
        sheets[episode] = [sheet_rows(episode, [RARITY_CYCLE[i % len(RARITY_CYCLE)]], start=i)[0] for i in indexes]
    upload_season(bucket, sheets)
    for (episode, index), (_, seed, variant) in LAYOUT.items():
        bucket.put(source_key(frame_number(episode, index)), scene_jpeg(seed, variant))


def groups_of(placed: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """LAYOUT group -> the datasets its frames are in (`placed`: season.dataset_keys)."""
    group = {frame_number(e, i): g for (e, i), (g, _, _) in LAYOUT.items()}
    out: dict[str, set[str]] = {}
    for frame, (dataset, _) in placed.items():
        out.setdefault(group[frame], set()).add(dataset)
    return out

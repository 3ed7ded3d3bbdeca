"""The contact sheet of the worst leak clusters: thumbnails side by side, frame names and datasets (Pillow).

One row per cluster; each thumbnail is the dataset object as S3 holds it (a few GETs), captioned with its frame
number, dataset and rarity. A picture that cannot be read shows as a grey box naming why.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from .s3_bucket import S3Bucket, run_bounded

THUMB = (192, 108)
CAPTION = 30
PAD = 8
COLOURS = {"train": (46, 125, 50), "validate": (21, 101, 192), "test": (198, 40, 40)}


def _thumbnail(store: S3Bucket, key: str) -> Image.Image | str:
    try:
        data = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", THUMB)
            return image.convert("RGB").resize(THUMB, Image.Resampling.BILINEAR)
    except (ClientError, BotoCoreError):
        return "not read"
    except (UnidentifiedImageError, OSError, ValueError):
        return "no picture"


def write_contact_sheet(store: S3Bucket, clusters: list[pd.DataFrame], path: Path, title: str) -> None:
    """Draw `clusters` (rows: frame, dataset, rarity, key) to the PNG `path` (OSError if it cannot be written)."""
    columns = max((len(c) for c in clusters), default=1)
    width = PAD + columns * (THUMB[0] + PAD)
    row_height = THUMB[1] + CAPTION + PAD
    height = 28 + max(len(clusters), 1) * row_height + PAD
    sheet = Image.new("RGB", (max(width, 480), height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((PAD, 8), title, fill=(0, 0, 0), font=font)
    keys = [k for c in clusters for k in c["key"]]
    thumbs = dict(run_bounded(lambda k: _thumbnail(store, k), keys, store.threads))
    if not clusters:
        draw.text((PAD, 40), "no frame of another dataset has a near-duplicate in train", fill=(0, 0, 0), font=font)
    for r, cluster in enumerate(clusters):
        y = 28 + r * row_height
        for c, row in enumerate(cluster.itertuples(index=False)):
            x = PAD + c * (THUMB[0] + PAD)
            thumb = thumbs.get(row.key)
            colour = COLOURS.get(row.dataset, (90, 90, 90))
            if isinstance(thumb, Image.Image):
                sheet.paste(thumb, (x, y))
            else:
                draw.rectangle([x, y, x + THUMB[0], y + THUMB[1]], fill=(200, 200, 200))
                draw.text((x + 6, y + 6), str(thumb or "not read"), fill=(0, 0, 0), font=font)
            draw.rectangle([x - 2, y - 2, x + THUMB[0] + 1, y + THUMB[1] + 1], outline=colour, width=2)
            draw.text((x, y + THUMB[1] + 3), str(row.frame), fill=(0, 0, 0), font=font)
            draw.text((x, y + THUMB[1] + 16), f"{row.dataset} / {row.rarity}", fill=colour, font=font)
    sheet.save(path, "PNG")

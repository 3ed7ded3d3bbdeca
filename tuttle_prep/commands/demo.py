"""`demo`: the whole job on an embedded S3 (moto server on 127.0.0.1), with no accounts and no network.

A synthetic season of three short episodes (real jpg frames, CSV-export sheets in S3, a manifest) is
uploaded, `sync` runs, a few sheet rows change, and `sync` runs again to show the incremental plan.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

import click
import pandas as pd

from ..core.frame_table import RARITIES, SHEET_HEADER
from ..core.run_report import RunReport
from ..core.text import escape_control
from ..errors import RunStopped
from ..settings import Settings
from .common import fail_config, invocation_clock, load_settings
from .sync import SyncOptions, build_context, run_sync

_FRAME_JPEG_B64 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZGNywtQFdB"
    "RkxOUlNSMj5aYVpQYEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09PT09P"
    "T09PT09PT09PT09PT0//wAARCAAkAEADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAA"
    "AgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6"
    "Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXG"
    "x8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREA"
    "AgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5"
    "OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPE"
    "xcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDDooor2TzQqzaWF3eZ+zQM4HVug+mTxnmr"
    "GiWAv74LICYYxukxxn0Gff8Almu2VVRQqKFVRgADAArx8xzT6tL2cFeX4I7cNhParmk7I4O60y9tE33Fuyp/eBDAfXHTrVSv"
    "SK5DxFpy2dws0CbYZeoHRW9PYH/Gpy/NvrE/Z1FZ9LbFYnB+zjzRehjUUUV7RwBRRRQB0XhGRRLdRk/OyqwHsM5/mK6avPbW"
    "5ktLlLiEjehyMjINdfZa5ZXS/PIIHA5WQ4H4Hof5+1fL5vgqntXWgrp7+XQ9bBV48nJJ2aNOsLxZIosYYyfnaXcB7AHP8xV2"
    "61mwtk3GdZSeixEMT/QfjXI6jfSahdGeQBeNqqP4R6e9Z5VgasqyqyVor8SsZiIKDgndsq0UUV9YeOFFFFABRRRQAUUUUAFF"
    "FFAH/9k="
)

EPISODES = ("E01", "E02", "E03")
SEASON = "S01"
SHEET_PREFIX = "tuttle_twins/demo_sheets/"
HEADER = list(SHEET_HEADER)


def frame_jpeg(frame: str) -> bytes:
    """A small real JPEG whose comment segment names the frame (so every object differs)."""
    jpeg = base64.b64decode(_FRAME_JPEG_B64)
    comment = frame.encode("ascii")
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return jpeg[:2] + segment + jpeg[2:]


def demo_sheet(episode_id: str, seconds: int = 12) -> pd.DataFrame:
    """A sheet of `seconds` × 4 frames; rarities drawn from a fixed pattern, mostly Common."""
    season, episode = episode_id[:3], episode_id[3:]
    rows = []
    pattern = ["Common", "Common", "Uncommon", "Common", "Rare", "Trash", "Common", "Uncommon", "Junk", "Legendary"]
    for i in range(seconds * 4):
        frame = f"TT_{season}_{episode}_FRM-00-00-{i // 4:02d}-{(i % 4) * 6:02d}"
        unsupervised = pattern[(i * 7 + int(episode[1:])) % len(pattern)]
        supervised = pattern[(i * 3) % len(pattern)] if i % 3 == 0 else ""
        jonny = "Rare" if i % 11 == 0 else ""
        rows.append(
            ["media.angel-nft.com/tuttle_twins/", str(i), frame, unsupervised, supervised, jonny, "[Emily, Ethan]"]
        )
    return pd.DataFrame(rows, columns=HEADER)


def upload_demo_season(client, settings: Settings, season: str, episodes: int, seconds: int = 12) -> dict:
    """Upload a generated season to `settings.bucket`: per episode a CSV sheet, its source jpgs (plus two the
    sheet does not list, as in production), and the season's manifest; return the sheets by episode id."""
    sheets = {f"{season}E{n:02d}": demo_sheet(f"{season}E{n:02d}", seconds) for n in range(1, episodes + 1)}
    manifest = []
    for episode_id, sheet in sheets.items():
        key = f"{SHEET_PREFIX}{episode_id}.csv"
        client.put_object(Bucket=settings.bucket, Key=key, Body=_csv(sheet))
        manifest.append(
            {
                "season_code": season,
                "episode_code": episode_id[3:],
                "google_spreadsheet_title": f"Tuttle Twins {episode_id} (demo CSV export)",
                "google_spreadsheet_share_link": f"s3://{settings.bucket}/{key}",
            }
        )
        folder = f"{settings.source_prefix}{episode_id.lower()}/default_eng/v1/frames/{settings.img_size}/"
        # a few more source frames than the sheet lists, as in production
        frames = list(sheet["FRAME NUMBER"]) + [f"TT_{season}_{episode_id[3:]}_FRM-00-01-00-{f:02d}" for f in (0, 12)]
        for frame in frames:
            client.put_object(Bucket=settings.bucket, Key=f"{folder}{frame}.jpg", Body=frame_jpeg(frame))
    client.put_object(
        Bucket=settings.bucket,
        Key=f"{settings.manifests_prefix}{season}-episodes.json",
        Body=json.dumps(manifest, indent=2).encode(),
    )
    return sheets


def environment_lines(endpoint: str, bucket: str) -> list[str]:
    """The three lines that point the CLI (in another terminal) at the embedded S3: endpoint, bucket, credentials."""
    return [
        f"export AWS_ENDPOINT_URL={endpoint}",
        f"export TUTTLE_BUCKET={bucket}",
        "unset AWS_PROFILE; export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-east-1",
    ]


def _csv(table: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def _dataset_counts(client, settings: Settings) -> str:
    counts: Counter[tuple[str, str]] = Counter()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=settings.ml_prefix):
        for obj in page.get("Contents", ()):
            parts = obj["Key"][len(settings.ml_prefix) :].split("/")
            if len(parts) == 3:
                counts[(parts[0], parts[1])] += 1
    lines = [f"{'dataset':<10}" + "".join(f"{r:>11}" for r in RARITIES) + f"{'total':>8}"]
    for dataset in settings.split:
        row = [counts[(dataset, r)] for r in RARITIES]
        lines.append(f"{dataset:<10}" + "".join(f"{n:>11}" for n in row) + f"{sum(row):>8}")
    return "\n".join(lines)


def _sync(settings: Settings, options: SyncOptions, title: str) -> RunReport:
    click.secho(f"\n== {title}", bold=True)
    report = RunReport(
        dry_run=options.dry_run,
        seed_fingerprint=settings.seed_fingerprint,
        split_mode=settings.split_mode,
        clock=invocation_clock(),
    )
    report = run_sync(settings, options, build_context(settings, options, report.run_id, report.clock), report)
    click.echo(report.table())
    for message in report.warnings + report.errors:
        click.echo(f"  note: {message}")
    click.echo(f"split seed fingerprint {report.seed_fingerprint} (sha256 of TUTTLE_SPLIT_SEED); {report.split_mode}")
    click.echo(report.outcome_line() + f"   (exit code {report.exit_code})")
    return report


def _write_report(client, settings: Settings, out: Path) -> Path:
    """What `report --out OUT` does, on the demo bucket: print the split's quality, write the files."""
    from ..core.dataset_report import build_dataset_report, leakage_lines, rarity_share_lines
    from ..core.labels import is_job_key
    from ..edges.s3_bucket import S3Bucket
    from ..edges.s3_listing import list_datasets
    from ..edges.s3_sheet_headers import headers_key
    from .common import key_layout
    from .report import write_report_files

    layout = key_layout(settings)
    inventory = list_datasets(S3Bucket(client, settings.bucket, 8), layout)  # within the client's pool of 10
    current, unexpected = layout.parse_dataset_keys(inventory.every_key())
    own = headers_key(settings.ml_prefix)  # as `report`: the job's own files are not unexpected
    unexpected = [k for k in unexpected if k != own and not is_job_key(k, settings.ml_prefix)]
    episodes = {f"{SEASON}{e}" for e in EPISODES}
    report = build_dataset_report(current, settings.split, unexpected, episodes, train=settings.train_dataset)
    click.secho("\n== the report: each rarity's split and the leakage between datasets", bold=True)
    click.echo("\n".join([*rarity_share_lines(report.rarity_shares, list(settings.split)), ""]))
    click.echo("\n".join(leakage_lines(report.leakage, settings.train_dataset)))
    out.mkdir(parents=True, exist_ok=True)
    where = f"s3://{settings.bucket}/{settings.ml_prefix}"
    files = write_report_files(report, out, f"Tuttle Twins demo datasets: {report.total_files:,} files in {where}")
    return files["png"]


def run_demo(keep: bool = False, port: int = 0) -> int:
    """Run the demo; return 0 if every step behaved as expected. `keep`: leave the S3 running (on `port`)."""
    from moto.server import ThreadedMotoServer

    from ..edges.aws import make_client

    logging.getLogger("tuttle_prep").setLevel(logging.WARNING)  # the demo prints its own story
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="demo",
            AWS_SECRET_ACCESS_KEY="demo",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        settings = Settings()  # the production layout, ignoring any local .env
        client = make_client("s3")
        client.create_bucket(Bucket=settings.bucket)
        click.echo(f"embedded S3 (moto server) at {endpoint}, bucket {settings.bucket}")

        sheets = upload_demo_season(client, settings, SEASON, len(EPISODES))
        click.echo(f"uploaded {SEASON}: {len(sheets)} episodes, {sum(len(s) for s in sheets.values())} sheet rows")

        options = SyncOptions(workers=16)
        first = _sync(settings, options, "first sync: every classified frame is copied from its source")

        # a reviewer edits two sheets
        e01, e02 = sheets[f"{SEASON}E01"], sheets[f"{SEASON}E02"]
        jonny = "JONNY's RECLASSIFICATION"
        e01.loc[[1, 2, 3], jonny] = ["Legendary", "Trash", "Rare"]
        e02.loc[[4, 5], ["UNSUPERVISED CLASSIFICATION", "SUPERVISED CLASSIFICATION", jonny]] = ""
        added = pd.DataFrame(
            [["", "48", f"TT_{SEASON}_E02_FRM-00-01-00-{f:02d}", "Rare", "", "", ""] for f in (0, 12)], columns=HEADER
        )
        sheets[f"{SEASON}E02"] = e02 = pd.concat([e02, added], ignore_index=True)
        for episode_id in (f"{SEASON}E01", f"{SEASON}E02"):
            client.put_object(
                Bucket=settings.bucket, Key=f"{SHEET_PREFIX}{episode_id}.csv", Body=_csv(sheets[episode_id])
            )
        click.echo("\nedited the sheets: 3 rows of S01E01 reclassified, 2 rows of S01E02 cleared, 2 rows added")

        plan_csv = Path(tempfile.gettempdir()) / "tuttle-prep-demo-plan.csv"
        dry = SyncOptions(workers=16, dry_run=True, plan_out=plan_csv)
        _sync(settings, dry, "dry run after the edits: the changed frames move (and a few that keep each rarity split)")
        second = _sync(settings, options, "second sync")
        rerun = _sync(settings, options, "third sync: nothing changed, nothing written")

        click.secho("\n== the datasets now", bold=True)
        click.echo(_dataset_counts(client, settings))
        png = _write_report(client, settings, Path(tempfile.gettempdir()) / "tuttle-prep-demo-report")
        click.echo(
            f"\nThe report's picture is {png} (and its tables report.csv, rarity_shares.csv, leakage.csv beside it).\n"
            f"\nThe plan of the dry run is in {plan_csv}.\n"
            f"Next: `{Path(sys.executable).as_posix()} data_preparation.py sync --help`; docs/deploy.md for "
            "connecting a real bucket, docs/google-sheets.md for the sheets."
        )
        ok = first.exit_code == 0 and second.exit_code == 0 and rerun.exit_code == 0 and rerun.total("keep") > 0
        ok = ok and rerun.copied == rerun.moved == rerun.deleted == 0
        if keep:
            click.echo(f"\nembedded S3 still running at {endpoint}; press Ctrl-C to stop. To point the CLI at it")
            click.echo("(another terminal, this folder), paste these three lines; then try any command (README):")
            for line in environment_lines(endpoint, settings.bucket):
                click.echo(f"  {line}")
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt, RunStopped):  # Ctrl-C (the entry point raises RunStopped)
                server._thread.join()  # type: ignore[union-attr]
        return 0 if ok else 1
    finally:
        server.stop()


@click.group("demo", invoke_without_command=True)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the embedded S3 running until Ctrl-C, and print the lines that point the CLI at it.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="The embedded S3's port on 127.0.0.1 (0: a free one).",
)
@click.pass_context
def demo(ctx: click.Context, keep: bool, port: int) -> None:
    """Run the whole job on an embedded S3 (moto server on 127.0.0.1): no accounts, no network.

    Uploads a small synthetic season (real jpg frames, CSV sheets, a manifest), runs `sync`, edits a
    few sheet rows, runs `sync` again to show the incremental plan. `demo load-season` adds a generated
    season to a bucket on this machine (the one `demo --keep` leaves running).
    """
    if ctx.invoked_subcommand is None:
        sys.exit(run_demo(keep=keep, port=port))


#: hosts an endpoint may name for `demo load-season` to write to it: this machine only
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@demo.command("load-season")
@click.option("--season", default="S02", show_default=True, help="Season code of the generated season (S01-S99).")
@click.option("--episodes", type=click.IntRange(1, 99), default=3, show_default=True, help="Episodes to generate.")
@click.option(
    "--seconds",
    type=click.IntRange(1, 3600),
    default=12,
    show_default=True,
    help="Seconds of each episode (4 frames a second in the sheet).",
)
def load_season(season: str, episodes: int, seconds: int) -> None:
    """Upload a generated season (CSV sheets, source jpgs, its manifest) to TUTTLE_BUCKET on a local S3.

    Writes only to an endpoint on this machine (AWS_ENDPOINT_URL on 127.0.0.1, localhost or ::1), such as the one
    `demo --keep` leaves running: never to a real bucket. Replaces the season's manifest if it exists.
    """
    from urllib.parse import urlsplit

    from ..edges.aws import make_client

    if not re.fullmatch(r"S[0-9]{2}", season) or season == "S00":
        fail_config(f"--season {season!r}: a season code is S01 to S99")
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "").strip()
    try:
        host = urlsplit(endpoint).hostname or ""
    except ValueError:
        host = ""
    if host not in _LOOPBACK:
        fail_config(
            f"demo load-season writes only to an S3 on this machine: AWS_ENDPOINT_URL is {endpoint or 'not set'} "
            "(run `demo --keep` and paste the lines it prints)"
        )
    settings = load_settings()
    client = make_client("s3")
    sheets = upload_demo_season(client, settings, season, episodes, seconds)
    rows = sum(len(s) for s in sheets.values())
    click.echo(
        f"uploaded {season} to s3://{settings.bucket} at {escape_control(endpoint)}: {len(sheets)} episodes, "
        f"{rows} sheet rows, manifest {settings.manifests_prefix}{season}-episodes.json; "
        "`sync --dry-run` shows what a sync would do"
    )

"""Applying a plan to S3: server-side copies in parallel (obstore), then batched deletes (boto3).

Copies (and refreshes: a copy from the source over the dataset object, never a delete) run before deletes, and
the source of a move is deleted only after its copy succeeded. A refresh that fails leaves the old object.
Deletes stay on boto3's DeleteObjects: its answer lists every key that failed, and each one is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.plan import Plan
from . import s3_dataplane
from .aws import describe
from .s3_bucket import S3Bucket, progress, run_bounded
from .s3_dataplane import copy_objects

DELETE_BATCH = 1000  # the DeleteObjects limit


@dataclass
class Failure:
    """One S3 operation that failed after retries."""

    action: str
    key: str
    error: str


@dataclass
class ApplyResult:
    """What applying a plan did."""

    copied: int = 0
    moved: int = 0
    refreshed: int = 0
    #: refreshes not attempted (the guard refused them)
    refreshes_held_back: int = 0
    #: (dataset key, the key it was copied from) of every copy, move and refresh that succeeded
    written: list[tuple[str, str]] = field(default_factory=list)
    deleted: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: plain deletes not attempted (a copy failed, or the delete guard refused them)
    deletes_held_back: int = 0
    #: why no delete at all ran (the run lost its lock before the delete phase), else None
    deletes_stopped: str | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)


def _delete_batch(store: S3Bucket, keys: list[str]) -> list[Failure]:
    response = store.client.delete_objects(
        Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    return [
        Failure("delete", e.get("Key", "?"), f"{e.get('Code', 'error')}: {e.get('Message', '')}".rstrip(": "))
        for e in response.get("Errors", ())
    ]


def delete_keys(store: S3Bucket, keys: list[str], desc: str = "delete") -> tuple[int, list[Failure]]:
    """Delete in batches of 1,000, checking every per-key error; return (deleted, failures)."""
    batches = [keys[i : i + DELETE_BATCH] for i in range(0, len(keys), DELETE_BATCH)]
    failures: list[Failure] = []
    with progress(len(keys), desc) as bar:
        for batch, outcome in run_bounded(lambda b: _delete_batch(store, b), batches, min(store.threads, 8)):
            if isinstance(outcome, BaseException):
                failures += [Failure("delete", k, describe(outcome)) for k in batch]
            else:
                failures += outcome
            bar.update(len(batch))
    return len(keys) - len(failures), failures


def apply_plan(
    store: S3Bucket,
    plan: Plan,
    plain_deletes: bool = True,
    refreshes: bool = True,
    on_progress: Callable[[str], None] | None = None,
    before_deletes: Callable[[], str | None] | None = None,
) -> ApplyResult:
    """Copies and moves (obstore, `store.workers` in flight), then deletes (boto3): the sources of moves whose
    copy succeeded, and, only if every copy succeeded and `plain_deletes` is true, the plain deletes.

    `before_deletes()` is asked right before the delete phase; a message from it means no delete runs
    (the copies made stay: the next run cleans up). Stopped early (SIGTERM), no new copy starts, the ones in
    flight finish, and no delete runs."""
    result = ApplyResult()
    copies = plan.of("copy")
    moves = plan.of("move")
    jobs = list(zip(copies["src_key"].tolist(), copies["dst_key"].tolist(), strict=True))
    jobs += zip(moves["src_key"].tolist(), moves["dst_key"].tolist(), strict=True)
    first_move, first_refresh = len(copies), len(jobs)
    refresh_rows = plan.of("refresh")
    if refreshes:
        jobs += zip(refresh_rows["src_key"].tolist(), refresh_rows["dst_key"].tolist(), strict=True)
    else:
        result.refreshes_held_back = len(refresh_rows)
    moved_sources: list[str] = []
    with progress(len(jobs), "copy") as bar:

        def done(index: int, error: BaseException | None) -> None:
            src, dst = jobs[index]
            action = "copy" if index < first_move else "move" if index < first_refresh else "refresh"
            if error is not None:
                result.failures.append(Failure(action, dst, f"copy from {src}: {s3_dataplane.describe(error)}"))
                bar.update(1)
                return
            result.written.append((dst, src))
            if action == "copy":
                result.copied += 1
            elif action == "refresh":
                result.refreshed += 1
            else:
                moved_sources.append(src)
            bar.update(1)

        if jobs:
            copy_objects(store.data_plane, jobs, store.workers, done)
    if on_progress:
        on_progress(f"copied {result.copied + len(moved_sources) + result.refreshed} of {len(jobs)} objects")
    deletes = plan.of("delete")["src_key"].tolist()
    if before_deletes is not None and (stopped := before_deletes()) is not None:
        result.deletes_stopped = stopped
        result.deletes_held_back = len(deletes)
        return result
    copy_failed = bool(result.failures)
    to_delete = list(moved_sources)
    if plain_deletes and not copy_failed:
        to_delete += deletes
    else:
        result.deletes_held_back = len(deletes)
    if to_delete:
        _, failures = delete_keys(store, to_delete)
        failed = {f.key for f in failures}
        result.moved = sum(1 for k in moved_sources if k not in failed)
        result.deleted = sum(1 for k in to_delete[len(moved_sources) :] if k not in failed)
        result.failures += failures
    return result

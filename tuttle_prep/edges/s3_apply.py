"""Applying a plan to S3: server-side copies in parallel, then batched deletes.

Copies run before deletes, and the source of a move is deleted only after its copy succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.plan import Plan
from .aws import describe
from .s3_bucket import S3Bucket, progress, run_bounded, worker_bucket

DELETE_BATCH = 1000  # the DeleteObjects limit
#: with several worker processes, plans with at least this many copies use them: one process's botocore tops out
#: near 1,000 copies/s on the GIL (benchmarks/bench_sync.py), and starting the processes costs about a second
PROCESS_MIN_COPIES = 2000
COPY_CHUNK = 500


class CopyProcessError(BotoCoreError):
    """A copy that failed in a worker process, after botocore's retries there; carries botocore's description."""

    fmt = "{description}"


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
    deleted: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: plain deletes not attempted (a copy failed, or the delete guard refused them)
    deletes_held_back: int = 0
    #: why no delete at all ran (the run lost its lock before the delete phase), else None
    deletes_stopped: str | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)


def _copy(store: S3Bucket, src_dst: tuple[str, str]) -> None:
    src, dst = src_dst
    store.client.copy_object(Bucket=store.bucket, Key=dst, CopySource={"Bucket": store.bucket, "Key": src})


def _copy_in_process(jobs: list[tuple[str, str, str]]) -> list[str | None]:
    """Run in a worker process: each (action, src, dst) job's outcome, None or botocore's description of the error."""
    store = worker_bucket()
    outcomes: list[str | None] = [None] * len(jobs)
    for index, outcome in run_bounded(lambda i: _copy(store, jobs[i][1:]), range(len(jobs)), store.workers):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (ClientError, BotoCoreError)):
                raise outcome
            outcomes[index] = describe(outcome)
    return outcomes


def _copy_jobs(store: S3Bucket, jobs: list[tuple[str, str, str]]) -> Iterator[tuple[tuple[str, str, str], Any]]:
    """Run each (action, src, dst) copy; yield (job, None or the error), in any order."""
    if len(jobs) >= PROCESS_MIN_COPIES and (pool := store.worker_pool()) is not None:
        chunks = [jobs[i : i + COPY_CHUNK] for i in range(0, len(jobs), COPY_CHUNK)]
        for chunk, outcomes in run_bounded(_copy_in_process, chunks, store.processes, pool):
            if isinstance(outcomes, BaseException):
                raise outcomes  # a crashed worker process: nothing is deleted, the next run re-plans
            for job, error in zip(chunk, outcomes, strict=True):
                yield job, (None if error is None else CopyProcessError(description=error))
    else:
        yield from run_bounded(lambda j: _copy(store, j[1:]), jobs, store.workers)


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
        for batch, outcome in run_bounded(lambda b: _delete_batch(store, b), batches, min(store.workers, 8)):
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
    on_progress: Callable[[str], None] | None = None,
    before_deletes: Callable[[], str | None] | None = None,
) -> ApplyResult:
    """Copies and moves in parallel, then deletes: move sources whose copy succeeded, and, only if
    every copy succeeded and `plain_deletes` is true, the plain deletes.

    `before_deletes()` is asked right before the delete phase; a message from it means no delete runs
    (the copies made stay: the next run cleans up)."""
    result = ApplyResult()
    copies = plan.of("copy")
    moves = plan.of("move")
    jobs = [("copy", s, d) for s, d in zip(copies["src_key"], copies["dst_key"], strict=True)]
    jobs += [("move", s, d) for s, d in zip(moves["src_key"], moves["dst_key"], strict=True)]
    moved_sources: list[str] = []
    with progress(len(jobs), "copy") as bar:
        try:
            for (action, src, dst), outcome in _copy_jobs(store, jobs):
                bar.update(1)
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, (ClientError, BotoCoreError)):
                        raise outcome
                    result.failures.append(Failure(action, dst, f"copy from {src}: {describe(outcome)}"))
                elif action == "copy":
                    result.copied += 1
                else:
                    moved_sources.append(src)
        finally:
            store.close()  # copies under way finish; the deletes run here, on threads
    if on_progress:
        on_progress(f"copied {result.copied + len(moved_sources)} of {len(jobs)} objects")
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

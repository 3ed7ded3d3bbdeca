"""CloudWatch at the edge: the run's log stream and its metrics (the SMS alarms on them are `alarms`).

Observability never decides a run's outcome: every failure here is a warning on stderr, every call has
short timeouts and few retries, and the log handler is flushed and closed within a bound, so cron never
hangs at exit and the sync's exit code is the one its `RunReport` earned.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import watchtower
from botocore.exceptions import BotoCoreError, ClientError

from .. import stopping
from ..core.names import EXIT_OK
from ..core.text import escape_control
from ..errors import RunStopped
from . import aws

if TYPE_CHECKING:  # `status` reads run summaries without the run report's tables (pandas)
    from ..core.run_report import RunReport

log = logging.getLogger(__name__)
run_log = logging.getLogger("tuttle_prep.run")

NAMESPACE = "TuttlePrep"
METRIC_NAMES = (
    "RunSucceeded",
    "RunFailed",
    "FilesCopied",
    "FilesMoved",
    "Refreshed",
    "FilesDeleted",
    "OperationErrors",
    "MissingSources",
    "RejectedRows",
    "DataFindings",
    "DurationSeconds",
)
#: seconds between batches sent to CloudWatch Logs while the run goes on
LOG_SEND_INTERVAL = 5
#: seconds the end of a run may wait for the last log batch
LOG_CLOSE_TIMEOUT = 5.0
# Two attempts per call (botocore's retries "max_attempts" counts retries, not the first try): an endpoint
# that refuses costs well under a second, one that never answers at most ~2 × read_timeout + backoff.
_OBSERVABILITY_CLIENT = {"max_attempts": 1, "connect_timeout": 2, "read_timeout": 5}
# ':' and '*' are not allowed in stream names; braces would be read by watchtower's str.format of the name
_STREAM_FORBIDDEN = re.compile(r"[:*{}\s]")


def observability_client(service: str) -> Any:
    """A client for logs/cloudwatch with short timeouts and one retry: it may fail, but not stall the run."""
    return aws.make_client(service, **_OBSERVABILITY_CLIENT)


def log_group_from_env(env: Mapping[str, str]) -> str | None:
    """TUTTLE_LOG_GROUP read on its own, so a run whose other settings are invalid still ships its logs."""
    return env.get("TUTTLE_LOG_GROUP", "").strip() or None


# -- logs --------------------------------------------------------------------------------------------


def stream_name(report: RunReport, host: str | None = None) -> str:
    """`<host>/<start time UTC>/<run id>`: one stream per run, sorted by time within a host."""
    started = datetime.fromtimestamp(report.started, UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    host = _STREAM_FORBIDDEN.sub("-", host or platform.node() or "unknown-host")
    return f"{host}/{started}/{report.run_id}"


class _CloudWatchFormatter(logging.Formatter):
    """`LEVEL logger message` lines; structured records (the run summary) as their bare JSON."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "structured", False):
            return record.getMessage()
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        """The line with the message's control characters escaped (text from sheets cannot forge a record)."""
        record.message = escape_control(record.message)
        return super().formatMessage(record)


@dataclass
class RunLogShipper:
    """A watchtower handler on the `tuttle_prep` logger that sends this run's records to one stream."""

    handler: watchtower.CloudWatchLogHandler
    log_group: str
    stream: str
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("tuttle_prep"))

    @classmethod
    def start(cls, log_group: str, report: RunReport, host: str | None = None) -> RunLogShipper | None:
        """Create the group (if allowed) and the run's stream, attach the handler; None (and a warning) on failure."""
        stream = stream_name(report, host)
        try:
            client = observability_client("logs")
            try:
                client.create_log_group(logGroupName=log_group)
            except client.exceptions.ResourceAlreadyExistsException:
                pass
            except ClientError as exc:
                # The group may have been created by operations and this role may only write to it.
                if aws.error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
                    raise
            client.create_log_stream(logGroupName=log_group, logStreamName=stream)
        except (BotoCoreError, ClientError) as exc:
            log.warning("CloudWatch Logs unavailable, logging to stderr only: %s", aws.describe(exc))
            return None
        handler = watchtower.CloudWatchLogHandler(
            log_group_name=log_group,
            log_stream_name=stream,
            boto3_client=client,
            send_interval=LOG_SEND_INTERVAL,
            create_log_group=False,
        )
        handler.FLUSH_TIMEOUT = LOG_CLOSE_TIMEOUT  # watchtower waits this long per stream on close
        handler.setFormatter(_CloudWatchFormatter())
        shipper = cls(handler=handler, log_group=log_group, stream=stream)
        shipper.logger.addHandler(handler)
        return shipper

    def send_outcome(self, report: RunReport) -> None:
        """Send one line per episode and the run's JSON summary record to the stream.

        They go to the stream only, whatever the log level: stdout already has the table and the outcome
        line, and a configuration error stays one sentence on stderr.
        """
        for line in episode_lines(report):
            self._send(line)
        summary = {"event": "run_summary", **report.summary()}
        self._send(json.dumps(summary, default=str), structured=True)

    def _send(self, message: str, structured: bool = False) -> None:
        record = run_log.makeRecord(run_log.name, logging.INFO, __file__, 0, message, (), None)
        record.structured = structured
        self.handler.handle(record)

    def stop(self) -> None:
        """Send what is queued (waiting at most LOG_CLOSE_TIMEOUT) and detach the handler."""
        self.logger.removeHandler(self.handler)
        try:
            self.handler.close()
        except Exception as exc:  # a broken log transport must not fail the run
            log.warning("CloudWatch Logs: closing the stream failed: %s", aws.describe(exc))
            return
        if any(q.unfinished_tasks for q in self.handler.queues.values()):
            log.warning(
                "CloudWatch Logs: the last records were not delivered within %gs; stderr has them all",
                LOG_CLOSE_TIMEOUT,
            )


def episode_lines(report: RunReport) -> list[str]:
    """One line per episode with its counts and status, for the log."""
    from ..core.run_report import COUNT_COLUMNS

    counts = report.counts.reindex(columns=COUNT_COLUMNS, fill_value=0)
    lines = []
    for episode_id, row in counts.iterrows():
        numbers = ", ".join(f"{column} {int(row[column])}" for column in COUNT_COLUMNS)
        status = report.episode_status(str(episode_id), int(row["missing"]) + int(row["rejected"]))
        lines.append(f"{episode_id}: {numbers}; {status}")
    for episode_id in sorted(set(report.skipped) - {str(e) for e in counts.index}):
        lines.append(f"{episode_id}: {report.episode_status(episode_id)}")
    return lines


# -- metrics -----------------------------------------------------------------------------------------


def metric_data(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run's datapoints for PutMetricData, from `RunReport.summary()`.

    `RunFailed` follows job failures only: a run that did all it could, with data findings, succeeded
    (even under --strict, whose exit 1 is for the person at the terminal, not for the pager).
    """
    failed = bool(summary["job_failed"])
    values = {
        "RunSucceeded": (0 if failed else 1, "Count"),
        "RunFailed": (1 if failed else 0, "Count"),
        "FilesCopied": (summary["copied"], "Count"),
        "FilesMoved": (summary["moved"], "Count"),
        "Refreshed": (summary.get("refreshed", 0), "Count"),
        "FilesDeleted": (summary["deleted"], "Count"),
        "OperationErrors": (summary["failed"], "Count"),
        "MissingSources": (summary["missing_sources"], "Count"),
        "RejectedRows": (summary["rejected_rows"], "Count"),
        "DataFindings": (summary["data_findings"], "Count"),
        "DurationSeconds": (summary["duration_seconds"], "Seconds"),
    }
    return [{"MetricName": name, "Value": float(values[name][0]), "Unit": values[name][1]} for name in METRIC_NAMES]


def publish_run_metrics(report: RunReport, namespace: str = NAMESPACE) -> bool:
    """Put the run's metrics; False (and a warning) if CloudWatch cannot be reached."""
    try:
        client = observability_client("cloudwatch")
        client.put_metric_data(Namespace=namespace, MetricData=metric_data(report.summary()))
    except (BotoCoreError, ClientError) as exc:
        log.warning("CloudWatch metrics not published to namespace %s: %s", namespace, aws.describe(exc))
        return False
    log.debug("metrics published to CloudWatch namespace %s in %s", namespace, metrics_region())
    return True


def metrics_region() -> str:
    """The region the metrics (and the alarms) go to: the one the clients are built for."""
    try:
        return str(aws.new_session().region_name or os.environ.get("AWS_REGION") or aws.DEFAULT_REGION)
    except Exception:  # noqa: BLE001 - only a description
        return aws.DEFAULT_REGION


def metrics_destination(namespace: str | None, reason: str) -> str:
    """What the run summary says of its metrics: where they go, or why they do not go anywhere."""
    if namespace is None:
        return f"not published: {reason}"
    return f"CloudWatch namespace {namespace} in {metrics_region()} ({reason})"


@contextmanager
def observed_run(report: RunReport, log_group: str | None, *, metrics_namespace: str | None) -> Iterator[None]:
    """Around a run: its records go to `log_group` (if set); at the end its summary there, then its metrics to
    `metrics_namespace` (None: none published; none either for a run that ended in a usage error, which is no run).

    An exception escaping the block counts as a failed run (it is re-raised). Nothing here changes the
    report's exit code or raises; the log stream is closed within LOG_CLOSE_TIMEOUT.
    """
    stopping.begin_run()
    shipper = None
    if log_group:
        try:
            shipper = RunLogShipper.start(log_group, report)
        except Exception as exc:  # the run goes on with stderr only
            log.warning("CloudWatch Logs unavailable, logging to stderr only: %s", exc)
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, RunStopped):
            _record_stop(report, exc.signum)
        elif isinstance(exc, SystemExit):
            # the process exits with this code: the summary and the metrics must say the same
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if code != EXIT_OK:
                report.stopped_with = code
                report.error(f"the run was stopped early before it finished (exit code {code})")
        elif isinstance(exc, KeyboardInterrupt):  # Python dies of SIGINT then: the shell sees 130
            _record_stop(report, signal.SIGINT)
        else:
            report.error(f"the run stopped early: {type(exc).__name__}: {exc}")
        raise
    finally:
        # From the hold on, no signal raises: the summary is written whole and the process exits with its code.
        # The one stop a run can raise may arrive just before the hold takes effect: it is caught and counts.
        try:
            stopping.hold_for_exit()
        except RunStopped:
            stopping.hold_for_exit()
        signum = stopping.stopped_by()
        if signum is not None and report.stopped_with is None:  # it arrived as the block ended
            _record_stop(report, signum)
        report.finished = report.finished or report.clock()
        if metrics_namespace is not None and report.usage_error:
            metrics_namespace = None
            report.metrics = "not published: a usage error is no run"
        try:
            if shipper is not None:
                shipper.send_outcome(report)
            if metrics_namespace is not None:
                publish_run_metrics(report, metrics_namespace)
        except Exception as exc:  # observability must not replace the run's own outcome
            log.warning("run summary or metrics failed: %s", exc)
        finally:
            if shipper is not None:
                shipper.stop()
            stopping.record_outcome(report.exit_code)


def _record_stop(report: RunReport, signum: int) -> None:
    report.stopped_with = 128 + signum
    how = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else signal.Signals(signum).name
    report.error(f"the run was stopped by {how} before it finished (exit code {report.stopped_with})")


# -- run history -------------------------------------------------------------------------------------

#: how many of a stream's last events are searched for its run summary (it is the last one a run sends)
_SUMMARY_SEARCH_EVENTS = 25


def recent_run_summaries(log_group: str, count: int) -> list[tuple[str, int, dict[str, Any] | None]] | None:
    """The `count` most recent runs in `log_group`: (stream name, creation time in ms, run summary or None).

    A stream without a summary is a run that was killed or is still running. None if the group does not
    exist; botocore errors otherwise.
    """
    client = observability_client("logs")
    try:
        streams = client.describe_log_streams(
            logGroupName=log_group, orderBy="LastEventTime", descending=True, limit=min(50, max(2 * count, 10))
        )["logStreams"]
    except client.exceptions.ResourceNotFoundException:
        return None
    # LastEventTime is updated lazily by CloudWatch; the creation time orders runs by their start
    streams.sort(key=lambda s: s.get("creationTime", 0), reverse=True)
    runs = []
    for stream in streams[:count]:
        name = stream["logStreamName"]
        events = client.get_log_events(
            logGroupName=log_group, logStreamName=name, startFromHead=False, limit=_SUMMARY_SEARCH_EVENTS
        )["events"]
        runs.append((name, int(stream.get("creationTime", 0)), _last_summary(events)))
    return runs


def _last_summary(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    for event in reversed(events):
        message = event.get("message", "")
        if not message.startswith("{"):
            continue
        try:
            record = json.loads(message)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "run_summary":
            return record
    return None

"""The data digest at the edge: the SNS topic it goes to, and the hash of the last findings sent.

The hash of the data findings of the last digest sent lives in the labels index's user metadata
(`data-findings-sha256` on `<ML prefix>labels.csv`), next to the index's own `sha256`: one HEAD per run
tells whether the findings changed, and S3 is strongly consistent, so two runs in a row compare right.
Recording it is a copy of the index onto itself with new metadata (its bytes stay), done only after
the digest was published: a lost record sends the digest once more, never loses one.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.findings import Digest
from .alarms import DATA_TOPIC, find_topic
from .aws import describe, error_code
from .cloudwatch import observability_client
from .s3_labels import FINDINGS_FIELD

log = logging.getLogger(__name__)

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def sent_findings_hash(client: Any, bucket: str, key: str) -> tuple[str | None, bool]:
    """(hash of the findings last sent, whether the index exists); botocore errors propagate."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return None, False
        raise
    return head.get("Metadata", {}).get(FINDINGS_FIELD), True


def record_sent_findings(client: Any, bucket: str, key: str, findings_sha256: str) -> None:
    """Put `findings_sha256` in the index's metadata, keeping its bytes and its other metadata.

    The copy is conditional on the ETag just read, so an index rewritten in between is not overwritten
    with old bytes (the record is then lost, and the next run sends the digest again).
    """
    head = client.head_object(Bucket=bucket, Key=key)
    metadata = {**head.get("Metadata", {}), FINDINGS_FIELD: findings_sha256}
    client.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        CopySourceIfMatch=head["ETag"],
        MetadataDirective="REPLACE",
        Metadata=metadata,
        ContentType=head.get("ContentType") or "text/csv; charset=utf-8",
    )


def digest_topic(topic_name: str = DATA_TOPIC) -> str | None:
    """The digest topic's ARN, or None when `alarm setup --digest-email` was never run."""
    return find_topic(observability_client("sns"), topic_name)


def publish_digest(topic_arn: str, digest: Digest) -> str:
    """Publish the digest (one message); its MessageId. botocore errors propagate."""
    sns = observability_client("sns")
    return sns.publish(TopicArn=topic_arn, Subject=digest.subject, Message=digest.message)["MessageId"]


def describe_failure(exc: BaseException) -> str:
    """A short, secret-free description of a failed S3 or SNS call."""
    if isinstance(exc, (BotoCoreError, ClientError)):
        return describe(exc)
    return type(exc).__name__

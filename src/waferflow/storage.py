"""Team storage on S3 through boto3: parse ``s3://`` URLs and check a bucket before use.

Example:
    >>> S3Location.parse("s3://fab-ml/waferflow/dvc")
    S3Location(bucket='fab-ml', prefix='waferflow/dvc')
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

__all__ = ["S3Location", "check_bucket"]


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
        return cls(parsed.netloc, parsed.path.strip("/"))


def check_bucket(location: S3Location, endpoint_url: str | None = None) -> None:
    """Raise ``ValueError`` naming the bucket and the reason when it cannot be reached."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3", endpoint_url=endpoint_url or None)
    try:
        client.head_bucket(Bucket=location.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        raise ValueError(f"S3 bucket {location.bucket!r} is not usable (HTTP/code {code}): {exc}") from None
    except BotoCoreError as exc:
        raise ValueError(f"S3 bucket {location.bucket!r} cannot be reached: {exc}") from None

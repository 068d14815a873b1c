"""Create the bucket that an s3:// FRAMEFLEET_OUTPUT_ROOT names, on FRAMEFLEET_S3_ENDPOINT_URL (dev MinIO).

Run by the one-shot `s3-init` service of the dev profile. Creating a bucket that exists is not an error,
and the S3 server may still be starting, so it retries for a while before giving up.
"""

from __future__ import annotations

import sys
import time

from botocore.exceptions import BotoCoreError, ClientError

from framefleet.config import get_settings
from framefleet.storage import S3Storage, parse_s3_uri

ATTEMPTS = 30
DELAY_SECONDS = 1.0
_EXISTS = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}


def main() -> int:
    """Create the output bucket; 0 when it exists afterwards."""
    settings = get_settings()
    if not settings.output_root.lower().startswith("s3://"):
        print(f"FRAMEFLEET_OUTPUT_ROOT is {settings.output_root}; no bucket to create")
        return 0
    bucket, _ = parse_s3_uri(settings.output_root)
    client = S3Storage(settings.s3_endpoint_url, settings.s3_region).client
    last: Exception | None = None
    for _ in range(ATTEMPTS):
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _EXISTS:
                break
            last = exc
        except BotoCoreError as exc:
            last = exc
        else:
            break
        time.sleep(DELAY_SECONDS)
    else:
        print(f"cannot create bucket {bucket!r} at {settings.s3_endpoint_url}: {last}", file=sys.stderr)
        return 1
    print(f"bucket {bucket!r} is ready at {settings.s3_endpoint_url or 'AWS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

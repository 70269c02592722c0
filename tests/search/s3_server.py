"""An S3-compatible server (moto's) on 127.0.0.1 for the checkpoint tests, with bucket `gsa`."""

from __future__ import annotations

import os

import pytest

from tests.search.ray_nodes import free_port

SECRET = "gsa-nas-test-secret-Zq81xK"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "gsa-nas-test-key", "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    """The server, its boto3 client and the storage URI of s3://gsa/runs on it; the AWS variables set
    to CREDENTIALS in this process while it runs (Ray nodes get them in their own env). Moto keeps
    its buckets per process, so a second test file gets the same bucket back: it uses a prefix of
    its own."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    client.create_bucket(Bucket="gsa")
    try:
        yield {"port": port, "client": client,
               "uri": f"s3://gsa/runs?endpoint_override=127.0.0.1:{port}&scheme=http"}
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

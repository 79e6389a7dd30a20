"""moto's S3 and SageMaker server on 127.0.0.1, over real HTTP, for every test of the AWS side."""

from __future__ import annotations

import json
import logging
import urllib.request

import boto3
import pytest
from moto.server import ThreadedMotoServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "mmsent-test-bucket"


@pytest.fixture(scope="module")
def aws():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's state lives in the process, across servers: each module starts from none (moto's reset endpoint),
    # whatever another module of this worker left in the bucket.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    clients = {name: session.client(name, endpoint_url=env["AWS_ENDPOINT_URL"]) for name in ("s3", "sagemaker")}
    clients["s3"].create_bucket(Bucket=BUCKET)
    yield env, clients
    server.stop()


def printed_requests(stdout: str) -> list[dict]:
    """The JSON requests a --dry-run printed one after another, in order."""
    decoder, text, found = json.JSONDecoder(), stdout, []
    while text.strip():
        request, end = decoder.raw_decode(text.lstrip())
        found.append(request)
        text = text.lstrip()[end:]
    return found

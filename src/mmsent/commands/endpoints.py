"""`mmsent deploy` and `mmsent endpoints`: a model dir served by a SageMaker endpoint."""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
import tempfile
import time
from pathlib import Path

from mmsent.commands.common import EXIT_OK, aws, aws_session, error, positive_int
from mmsent.environment import Environment
from mmsent.errors import SettingsError


def add_parsers(commands) -> None:
    deploy = commands.add_parser("deploy", help="serve a model dir (or a training job's model) from a SageMaker endpoint",
                                 description="Pack model.tar.gz (the model dir and code/ for the AWS PyTorch inference "
                                 "image), upload it, and create the Model, EndpointConfig and Endpoint (an existing "
                                 "endpoint of that name is updated to the new model).")  # fmt: skip
    source = deploy.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="a model dir written by mmsent train")
    source.add_argument("--job", help="a training job whose model to deploy")
    deploy.add_argument("--role", required=True, help="IAM role ARN the endpoint runs as (reads the archive from S3)")
    deploy.add_argument("--bucket", required=True, help="S3 bucket for model.tar.gz")
    deploy.add_argument("--prefix", default="mmsent", help="key prefix in the bucket (default: mmsent)")
    deploy.add_argument("--endpoint-name", required=True, help="the endpoint's name (letters, digits, hyphens)")
    kind = deploy.add_mutually_exclusive_group()
    kind.add_argument("--instance-type", default="ml.g5.xlarge", help="real-time instances (default: ml.g5.xlarge, one A10G GPU)")
    kind.add_argument("--serverless", type=int, metavar="MEMORY_MB", help="serverless instead, with this much memory "
                      "(1024 to 6144 in steps of 1024; CPU only, scales to zero)")
    deploy.add_argument("--instance-count", type=positive_int, default=1, help="real-time instances behind the endpoint (default: 1)")
    deploy.add_argument("--framework-version", default=None, help="PyTorch version of the AWS inference image "
                        "(default: the newest one mmsent knows, see mmsent.sagemaker.images)")
    deploy.add_argument("--image-uri", help="inference image (default: the AWS PyTorch inference image for the region)")
    deploy.add_argument("--region", help="AWS region (default: boto3's)")
    add_asr_model(deploy, "the endpoint")
    deploy.add_argument("--no-wheels", action="store_true", help="pack no wheels: the endpoint installs transformers, av "
                        "and ftfy from PyPI as it starts (it needs internet access then; by default they are packed, "
                        "downloaded once into the cache folder)")  # fmt: skip
    deploy.add_argument("--dry-run", action="store_true", help="print the requests as JSON; upload and create nothing")
    deploy.add_argument("--wait", action="store_true", help="wait until the endpoint is InService; exit non-zero if it fails")
    deploy.add_argument("--poll-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    deploy.set_defaults(run=_run_deploy)

    endpoints = commands.add_parser("endpoints", help="SageMaker endpoints: list, invoke, delete").add_subparsers(metavar="ACTION")
    listing = endpoints.add_parser("list", help="endpoints and their status")
    listing.add_argument("--name-contains", default="", help="filter by name (default: all)")
    invoke = endpoints.add_parser("invoke", help="send a clip (and/or --text) to an endpoint; print its answer")
    invoke.add_argument("endpoint", help="endpoint name")
    invoke.add_argument("clip", nargs="?", type=Path, help="a media file (omit for --text alone)")
    invoke.add_argument("--text", help="what was said")
    delete = endpoints.add_parser("delete", help="delete an endpoint, its endpoint config and its model")
    delete.add_argument("endpoint", help="endpoint name")
    for action, run in ((listing, _run_list), (invoke, _run_invoke), (delete, _run_delete)):
        action.add_argument("--region", help="AWS region (default: boto3's)")
        action.set_defaults(run=run)


def _run_deploy(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.deploy import EndpointSettings, build_model_archive, create_endpoint, endpoint_requests, wait_in_service
    from mmsent.sagemaker.images import DEFAULT_INFERENCE_VERSION, inference_image, inference_image_uri
    from mmsent.sagemaker.launch import print_request
    from mmsent.sagemaker.s3 import check_bucket, s3_client, upload_file
    from mmsent.sagemaker.wheels import fetch_wheels, inference_requirements

    version = args.framework_version or DEFAULT_INFERENCE_VERSION
    session = aws_session(args.region)
    instance_type = None if args.serverless is not None else args.instance_type
    stamp = time.strftime("%Y%m%d-%H%M%S")
    key = f"{args.prefix}/endpoints/{args.endpoint_name}/{stamp}/model.tar.gz"
    settings = EndpointSettings(
        endpoint_name=args.endpoint_name, role_arn=args.role, region=session.region_name, model_data_url=f"s3://{args.bucket}/{key}",
        image_uri=args.image_uri or inference_image_uri(session.region_name, instance_type, version),
        instance_type=instance_type, instance_count=args.instance_count, serverless_memory_mb=args.serverless,
    )  # fmt: skip
    requests = endpoint_requests(settings, stamp)
    with tempfile.TemporaryDirectory(prefix="mmsent-deploy-") as folder:
        model_dir = args.model_dir if args.model_dir is not None else job_model(session, args.job, Path(folder))
        image = inference_image(version)
        wheels = None if args.no_wheels else fetch_wheels(inference_requirements(image), image, env.cache_dir)
        archive = build_model_archive(model_dir, Path(folder) / "model.tar.gz", version, args.asr_model, wheels)
        if args.dry_run:
            print(f"would upload {archive.stat().st_size / 1e6:.1f} MB to {settings.model_data_url}", file=sys.stderr)
            for request in requests.values():
                print_request(request)
            return EXIT_OK
        s3 = s3_client(session)
        aws(lambda: check_bucket(s3, args.bucket, session.region_name))
        aws(lambda: upload_file(s3, archive, args.bucket, key))
    sagemaker = session.client("sagemaker")
    aws(lambda: create_endpoint(sagemaker, requests))
    print(f"endpoint {args.endpoint_name}: creating (model {requests['create_model']['ModelName']}, {settings.model_data_url})")
    print(f"try it:  mmsent endpoints invoke {args.endpoint_name} CLIP.mp4;  remove it: mmsent endpoints delete {args.endpoint_name}")
    if not args.wait:
        return EXIT_OK
    endpoint = aws(lambda: wait_in_service(sagemaker, args.endpoint_name, args.poll_seconds))
    if endpoint["EndpointStatus"] != "InService":
        print(f"endpoint {args.endpoint_name} {endpoint['EndpointStatus']}: {endpoint.get('FailureReason', 'no reason given')}",
              file=sys.stderr)  # fmt: skip
        return 1
    return EXIT_OK


def add_asr_model(parser: argparse.ArgumentParser, server: str) -> None:
    """--asr-model, as deploy and transform take it: packed into the archive (deploy.build_model_archive)."""
    parser.add_argument("--asr-model", type=Path, metavar="FOLDER", help="a saved speech-recognition model (Whisper "
                        f"family) packed with the model: {server} transcribes clips sent without text")  # fmt: skip


def job_model(session, job: str, folder: Path) -> Path:
    """The training job's model, downloaded and unpacked (checked as a model dir) into `folder`."""
    from mmsent.sagemaker.jobs import pull

    found = aws(lambda: pull(session, job, folder))
    if "model" not in found:
        raise SettingsError(f"training job {job} has no model artifacts (not finished, or failed)")
    return found["model"]


def _run_list(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.deploy import list_endpoints

    found = aws(lambda: list_endpoints(aws_session(args.region).client("sagemaker"), args.name_contains or None))
    for endpoint in found:
        print(f"{endpoint['EndpointName']:<40} {endpoint['EndpointStatus']:<12} {endpoint['CreationTime']:%Y-%m-%d %H:%M}")
    if not found:
        print("no endpoints" + (f" whose name contains {args.name_contains!r}" if args.name_contains else ""))
    return EXIT_OK


def _run_invoke(args: argparse.Namespace, env: Environment) -> int:
    if args.clip is None and args.text is None:
        return error("give a clip, --text, or both")
    if args.clip is not None and not args.clip.is_file():
        return error(f"{args.clip}: no such file")
    if args.text is not None:
        payload = {"text": args.text} | ({"media": base64.b64encode(args.clip.read_bytes()).decode()} if args.clip else {})
        body, content_type = json.dumps(payload).encode(), "application/json"
    else:
        body = args.clip.read_bytes()
        content_type = mimetypes.guess_type(args.clip.name)[0] or "application/octet-stream"
    runtime = aws_session(args.region).client("sagemaker-runtime")
    answer = aws(lambda: runtime.invoke_endpoint(EndpointName=args.endpoint, Body=body, ContentType=content_type,
                                                  Accept="application/json"))  # fmt: skip
    print(answer["Body"].read().decode("utf-8", errors="replace"))
    return EXIT_OK


def _run_delete(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.deploy import delete_endpoint

    for line in aws(lambda: delete_endpoint(aws_session(args.region).client("sagemaker"), args.endpoint)):
        print(f"deleted {line}")
    return EXIT_OK

"""`mmsent transform` and `mmsent transforms`: a model dir over many clips as a SageMaker batch transform job."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from mmsent.commands.common import EXIT_OK, aws, aws_session, error, positive_int
from mmsent.commands.endpoints import add_asr_model, job_model
from mmsent.commands.inference import OUTPUT_SUFFIXES, unwritable, write_predictions
from mmsent.environment import Environment
from mmsent.errors import SettingsError


def add_parsers(commands) -> None:
    transform = commands.add_parser(
        "transform", help="classify many clips as a SageMaker batch transform job (no endpoint left running)",
        description="Pack the model as deploy does, upload the clips (a folder, or a MELD-format CSV's rows with their "
        "clips) or take an S3 prefix of clips, and create a Model and a batch transform job that writes one answer "
        "per clip to an output prefix. --wait follows it; --out (or mmsent transforms results) reads the answers "
        "back as mmsent predict --out writes them.")  # fmt: skip
    source = transform.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", type=Path, help="a model dir written by mmsent train")
    source.add_argument("--job", help="a training job whose model to use")
    inputs = transform.add_mutually_exclusive_group()
    inputs.add_argument("--input-uri", help="s3:// prefix of clips, one media file per object, used as it is")
    inputs.add_argument("--csv", type=Path, help="a MELD-format CSV of rows to classify, with --clips-dir for their clips "
                        "(each row goes as one JSON line: transcript, speaker, dialogue turns, the clip inlined)")  # fmt: skip
    transform.add_argument("--clips-dir", type=Path, help="a folder of clips to upload and classify (or the --csv rows' clips)")
    transform.add_argument("--role", required=True, help="IAM role ARN the job runs as (reads the archive and input, writes output)")
    transform.add_argument("--bucket", required=True, help="S3 bucket for the archive, the uploaded input and the output")
    transform.add_argument("--prefix", default="mmsent", help="key prefix in the bucket (default: mmsent)")
    transform.add_argument("--output-uri", help="s3:// prefix for the answers (default: BUCKET/PREFIX/transforms/JOB/output)")
    transform.add_argument("--job-name", help="the transform job's name (default: mmsent-transform-YYYYMMDD-HHMMSS)")
    transform.add_argument("--instance-type", default="ml.g5.xlarge", help="default: ml.g5.xlarge (one A10G GPU)")
    transform.add_argument("--instance-count", type=positive_int, default=1, help="instances sharing the input's files (default: 1)")
    transform.add_argument("--max-payload-mb", type=positive_int, help="largest request in MB, 1 to 100 (default: the "
                           "largest clip's, at least 6); one over it is refused before anything is created")  # fmt: skip
    transform.add_argument("--max-concurrent", type=positive_int, help="requests at a time per instance (default: one per "
                           "model-server worker, one per GPU); times --max-payload-mb at most 100")  # fmt: skip
    transform.add_argument("--invocation-timeout", type=positive_int, default=600, help="seconds a request may take (default: 600)")
    transform.add_argument("--framework-version", default=None, help="PyTorch version of the AWS inference image "
                           "(default: the newest one mmsent knows)")  # fmt: skip
    transform.add_argument("--image-uri", help="inference image (default: the AWS PyTorch inference image for the region)")
    transform.add_argument("--region", help="AWS region (default: boto3's)")
    add_asr_model(transform, "the job")
    transform.add_argument("--no-wheels", action="store_true", help="pack no wheels: the job installs transformers, av and "
                           "ftfy from PyPI as it starts (as deploy --no-wheels)")  # fmt: skip
    transform.add_argument("--dry-run", action="store_true", help="print the requests as JSON; upload and create nothing")
    transform.add_argument("--wait", action="store_true", help="follow the job until it ends; exit non-zero unless it completes")
    transform.add_argument("--out", type=Path, help="with --wait: write the answers to FILE.csv or FILE.jsonl, as predict --out")
    transform.add_argument("--poll-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    transform.set_defaults(run=_run_transform)

    transforms = commands.add_parser("transforms", help="SageMaker batch transform jobs").add_subparsers(metavar="ACTION")
    results = transforms.add_parser("results", help="a finished transform job's answers, as mmsent predict --out writes them")
    results.add_argument("job", help="transform job name")
    results.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.jsonl")
    results.add_argument("--region", help="AWS region (default: boto3's)")
    results.set_defaults(run=_run_results)


def _checked_out(out: Path | None) -> None:
    if out is None:
        return
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise SettingsError(f"--out {out}: the file name must end in {' or '.join(OUTPUT_SUFFIXES)}")
    if problem := unwritable(out):
        raise SettingsError(f"--out {out}: {problem}")


def _run_transform(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.commands.inference import csv_requests
    from mmsent.sagemaker.deploy import build_model_archive
    from mmsent.sagemaker.images import DEFAULT_INFERENCE_VERSION, inference_image, inference_image_uri
    from mmsent.sagemaker.launch import print_request
    from mmsent.sagemaker.s3 import check_bucket, parse_s3_uri, s3_client, upload_files
    from mmsent.sagemaker.transform import (
        TransformSettings, clips_at, clips_in, create_transform_job, json_lines, name_taken, payload_for,
        transform_requests, wait_for_transform,
    )  # fmt: skip
    from mmsent.sagemaker.wheels import fetch_wheels, inference_requirements

    if args.out is not None and not args.wait:
        return error("--out reads the answers once the job is done: give it with --wait (or use mmsent transforms results)")
    if args.input_uri is not None and args.clips_dir is not None:
        return error("--clips-dir is a local folder to upload; --input-uri is clips already in S3: give one")
    if args.input_uri is None and args.csv is None and args.clips_dir is None:
        return error("nothing to classify: give --clips-dir, --csv (with --clips-dir) or --input-uri")
    _checked_out(args.out)
    version = args.framework_version or DEFAULT_INFERENCE_VERSION
    session = aws_session(args.region)
    job_name = args.job_name or time.strftime("mmsent-transform-%Y%m%d-%H%M%S")
    base = f"{args.prefix}/transforms/{job_name}"
    s3 = s3_client(session)
    sagemaker = session.client("sagemaker")
    if not args.dry_run and (taken := aws(lambda: name_taken(sagemaker, job_name))):
        return error(f"--job-name {job_name}: a {taken} of that name exists already (its inputs are under "
                     f"s3://{args.bucket}/{base}/); choose another name. Nothing was uploaded")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mmsent-transform-") as folder:
        if args.input_uri is not None:
            packed, input_uri = aws(lambda: clips_at(s3, args.input_uri)), args.input_uri
        else:
            input_uri = f"s3://{args.bucket}/{base}/input/"
            if args.csv is not None:
                packed = json_lines(csv_requests(args.csv, args.clips_dir), Path(folder), args.instance_count)
            else:
                packed = clips_in(args.clips_dir)
        settings = TransformSettings(
            job_name=job_name, role_arn=args.role, region=session.region_name, model_data_url=f"s3://{args.bucket}/{base}/model.tar.gz",
            image_uri=args.image_uri or inference_image_uri(session.region_name, args.instance_type, version),
            input_uri=input_uri, output_uri=args.output_uri or f"s3://{args.bucket}/{base}/output/", records=packed.records,
            instance_type=args.instance_type, instance_count=args.instance_count,
            max_payload_mb=payload_for(packed, args.max_payload_mb), max_concurrent=args.max_concurrent,
            invocation_timeout=args.invocation_timeout,
        )  # fmt: skip
        requests = transform_requests(settings)
        model_dir = args.model_dir if args.model_dir is not None else job_model(session, args.job, Path(folder))
        image = inference_image(version)
        wheels = None if args.no_wheels else fetch_wheels(inference_requirements(image), image, env.cache_dir)
        archive = build_model_archive(model_dir, Path(folder) / "model.tar.gz", version, args.asr_model, wheels)
        uploads = [(archive, f"{base}/model.tar.gz")] + [(path, f"{base}/input/{key}") for path, key in packed.files]
        size = sum(path.stat().st_size for path, _ in uploads)
        print(f"{packed.count} {'clips' if packed.records == 'clips' else 'rows'}, the largest request "
              f"{packed.largest[0] / 1e6:.1f} MB ({packed.largest[1]}); MaxPayloadInMB {settings.max_payload_mb}", file=sys.stderr)  # fmt: skip
        if args.dry_run:
            print(f"would upload {len(uploads)} files ({size / 1e6:.1f} MB) to s3://{args.bucket}/{base}/", file=sys.stderr)
            for request in requests.values():
                print_request(request)
            return EXIT_OK
        for bucket in {parse_s3_uri(uri)[0] for uri in (f"s3://{args.bucket}/", input_uri, settings.output_uri)}:
            aws(lambda: check_bucket(s3, bucket, session.region_name))
        aws(lambda: upload_files(s3, uploads, args.bucket))
    aws(lambda: create_transform_job(sagemaker, requests))
    print(f"transform job {job_name}: created (model {job_name}, answers to {settings.output_uri})")
    if not args.wait:
        print(f"read the answers when it is done:  mmsent transforms results {job_name} --out predictions.csv")
        return EXIT_OK
    job = aws(lambda: wait_for_transform(sagemaker, job_name, args.poll_seconds))
    if job["TransformJobStatus"] != "Completed":
        print(f"transform job {job_name} {job['TransformJobStatus']}: {job.get('FailureReason', 'no reason given')}", file=sys.stderr)
        return 1
    if args.out is not None:
        _write_results(s3, job, args.out)
    return EXIT_OK


def _run_results(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.s3 import s3_client

    _checked_out(args.out)
    session = aws_session(args.region)
    job = aws(lambda: session.client("sagemaker").describe_transform_job(TransformJobName=args.job))
    _write_results(s3_client(session), job, args.out)
    return EXIT_OK


def _write_results(s3, job: dict, out: Path) -> None:
    from mmsent.commands.inference import metrics_text
    from mmsent.sagemaker.transform import read_results

    predictions = aws(lambda: read_results(s3, job))
    write_predictions(out, predictions)
    print(f"{len(predictions)} predictions: {out}", file=sys.stderr)
    if labelled := [p for p in predictions if p.labels is not None]:
        print(metrics_text(labelled))

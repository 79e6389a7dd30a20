"""What the subcommands share: exit statuses, errors, common options, and where the data is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmsent.arguments import add_config_arguments, config_from_args, given, parse_bool, parse_names
from mmsent.config import KINETICS, MediaConfig, ModelConfig, TextConfig, TrainConfig
from mmsent.environment import Environment
from mmsent.errors import ServiceError, SettingsError

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # a usage error, or data that cannot be used as it is
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C ended


def add_training_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="decode every clip once into this media cache (built or updated "
                        "first) and train from it; frozen backbones then run once. Default: decode every epoch")
    add_rebuild_cache(parser)
    add_model_arguments(parser)
    add_config_arguments(parser, TextConfig)
    add_config_arguments(parser, MediaConfig)
    add_config_arguments(parser, TrainConfig)


class RaisingParser(argparse.ArgumentParser):
    """A parser whose errors are exceptions, for checking arguments meant for another process."""

    def error(self, message: str):
        raise SettingsError(f"training arguments: {message}")


def add_rebuild_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rebuild-cache", type=parse_bool, nargs="?", const=True, default=False, metavar="BOOL",
                        help="replace a media cache that another dataset built (default: refuse it)")


def add_data_dir(parser: argparse.ArgumentParser, decodes: bool = False) -> None:
    """`decodes`: the command decodes clips with its own media options (a dataset's own where it names them)."""
    sample = ("; decode settings not given are the dataset's own where it names them in mmsent-media.json beside its "
              "CSV (the sample does: 4 frames of 64 px)") if decodes else ""  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="MELD.Raw-style or flat folder (default: the SM_CHANNEL_* "
                        f"folders inside a SageMaker job, else the built-in sample dataset{sample})")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modalities", type=parse_names, default=None, metavar="A,B",
                        help="any subset of text,audio,video (default: all three)")
    add_config_arguments(parser, ModelConfig, skip=("modalities",))


def _int_at_least(minimum: int, meaning: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {meaning}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {meaning}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
non_negative_int = _int_at_least(0, "an integer 0 or more")


def error(message: str) -> int:
    print(f"mmsent: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def aws_session(region: str | None):
    """A boto3 session for `region` (None: boto3's own choice), refused when no region is known."""
    import boto3

    from mmsent.sagemaker.images import unknown_region

    session = boto3.Session(region_name=region)
    if not session.region_name:
        raise SettingsError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    if problem := unknown_region(session.region_name):  # else an image URI and a request for a region that is not there
        raise SettingsError(problem)
    return session


def aws(call, service: str = "AWS"):
    """`call()`, with what AWS (or botocore on its way there) refused as a ServiceError naming `service`."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except (ClientError, BotoCoreError, Boto3Error) as problem:
        raise ServiceError(f"{service}: {problem}") from None


def model_config(args: argparse.Namespace, env: Environment | None = None) -> ModelConfig:
    """ModelConfig from the options. Inside a SageMaker job (`env`) R3D-18's weights default to Kinetics-400's,
    as the seed's model used them: a job has the internet (or says at start-up that it has not)."""
    extra = {"modalities": args.modalities} if args.modalities is not None else {}
    if env is not None and env.in_sagemaker and not given(args, "video_weights"):
        extra["video_weights"] = KINETICS
    return config_from_args(ModelConfig, args, **extra)


def encoder_specs(model_cfg: ModelConfig) -> dict:
    """Each transformers encoder of the model, checked before any work: modality -> pretrained.EncoderSpec.
    A path that is not there, a folder that is not a model, a model of the wrong kind: SettingsError."""
    from mmsent.pretrained import describe

    return {modality: describe(modality, name) for modality, name in model_cfg.transformers_encoders().items()}


def encoder_media(specs: dict) -> dict[str, tuple[int, str]]:
    """The decode settings the encoders fix: setting -> (value, why)."""
    fixed = {}
    if "audio" in specs:
        fixed["sample_rate"] = (specs["audio"].processor["sample_rate"], "the audio model's sampling rate")
    if "video" in specs:
        fixed["num_frames"] = (specs["video"].processor["num_frames"], "the video model's num_frames")
        fixed["frame_size"] = (specs["video"].processor["frame_size"], "the video model's image_size")
    return fixed


def check_text_length(text: TextConfig, specs: dict) -> None:
    """--max-tokens within the text model's position embeddings, or a long utterance fails mid-run."""
    limit = specs["text"].processor.get("max_positions") if "text" in specs else None
    if limit is not None and text.max_tokens > limit:
        raise SettingsError(f"--max-tokens {text.max_tokens}: the text model reads at most {limit} tokens "
                            "(its max_position_embeddings)")


def resolve_splits(args: argparse.Namespace, env: Environment):
    """The splits: --data-dir, else SageMaker channels, else the built-in sample."""
    from mmsent.data.layout import find_splits, splits_from_channels
    from mmsent.data.sample import cached_sample

    if args.data_dir is not None:
        return find_splits(args.data_dir)
    if env.channels:
        return splits_from_channels(env.channels)
    sample = cached_sample(env.cache_dir)
    print(f"using the built-in sample dataset in {sample}", file=sys.stderr)
    return find_splits(sample)


def media_config(args: argparse.Namespace, splits, fixed: dict[str, tuple[int, str]] | None = None) -> MediaConfig:
    """MediaConfig from the options; the dataset's own settings (layout.media_defaults) where they are not
    given. `fixed` (encoder_media): settings an encoder needs, which an option may repeat but not change."""
    from mmsent.data.layout import media_defaults

    fixed = fixed or {}
    for name, (value, why) in fixed.items():
        if given(args, name) and getattr(args, name) != value:
            raise SettingsError(f"--{name.replace('_', '-')} {getattr(args, name)}: {why} is {value}; leave it out")
    named, note = media_defaults(splits)
    defaults = {k: v for k, v in named.items() if not given(args, k) and k not in fixed}
    if defaults:
        print(f"the dataset's own decode settings ({note}): {defaults} (options given on the command line win)", file=sys.stderr)
    try:
        return config_from_args(MediaConfig, args, **defaults, **{name: value for name, (value, _) in fixed.items()})
    except TypeError as problem:  # a value of the wrong type in the note
        raise SettingsError(f"{note}: {problem}") from None

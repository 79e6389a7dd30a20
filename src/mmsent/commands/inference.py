"""`mmsent predict` and `mmsent serve`: a model dir used on clips of one's own."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from mmsent.commands.common import EXIT_OK, error, non_negative_int, positive_int
from mmsent.environment import Environment
from mmsent.errors import SettingsError

OUTPUT_SUFFIXES = (".csv", ".jsonl")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_asr_model(parser) -> None:
    parser.add_argument("--asr-model", metavar="PATH_OR_NAME",
                        help="a speech-recognition model (Whisper family; a local folder, or a hub name where the hub is "
                        "reachable) that transcribes clips given without a transcript, for a model trained with text")  # fmt: skip


def add_parsers(commands) -> None:
    predict = commands.add_parser(
        "predict", help="emotion and sentiment of your own clips (or transcripts) with a trained model dir",
        description="Classify clips with a model dir. Clips up to the model's window (its --audio-seconds) are "
        "taken whole, as in training; longer ones on their centre window, or window by window with --windows. "
        "A clip that cannot be decoded gets a row naming the problem.")  # fmt: skip
    predict.add_argument("clips", nargs="*", type=Path, help="media files FFmpeg reads: mp4, mov, mkv, webm, wav, mp3, ...")
    predict.add_argument("--model-dir", type=Path, required=True, help="a model dir written by mmsent train (or pulled from a job)")
    predict.add_argument("--text", help="what was said in the clip (one clip), or a transcript to classify alone (no clip)")
    predict.add_argument("--csv", type=Path, help="a MELD-format CSV of rows to classify (Emotion/Sentiment optional: "
                         "where present, the metrics are printed too)")
    predict.add_argument("--clips-dir", type=Path, help="where the --csv rows' clips are (diaD_uttU.mp4); without it, text only")
    predict.add_argument("--windows", type=positive_float, metavar="SECONDS",
                         help="one prediction per window of this many seconds across each clip (a timeline)")
    predict.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    predict.add_argument("--out", type=Path, help="also write the predictions to FILE.csv or FILE.jsonl")
    predict.add_argument("--batch-size", type=positive_int, default=16, help="items per forward pass (default: 16)")
    predict.add_argument("--num-workers", type=non_negative_int, default=2,
                         help="processes decoding clips in parallel; 0 or 1 decodes in this process (default: 2)")
    _add_asr_model(predict)
    predict.set_defaults(run=_run_predict)

    serve = commands.add_parser("serve", help="serve a model dir over HTTP (SageMaker's /ping and /invocations)")
    serve.add_argument("--model-dir", type=Path, required=True, help="a model dir written by mmsent train")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 for other machines (default: 127.0.0.1)")
    serve.add_argument("--port", type=non_negative_int, default=8080, help="port; 0 picks a free one (default: 8080)")
    serve.add_argument("--threads", type=positive_int, default=4, help="predictions at once (default: 4)")
    serve.add_argument("--queue", type=non_negative_int, default=4, help="requests that may wait for a prediction thread; "
                       "more get 503 with Retry-After at once, and /ping never waits behind them (default: 4)")
    serve.add_argument("--max-body-mb", type=positive_float, default=50.0, help="larger request bodies get 413 (default: 50)")
    serve.add_argument("--timeout", type=positive_float, default=60.0, help="seconds a request may take before 504 (default: 60)")
    _add_asr_model(serve)
    serve.set_defaults(run=_run_serve)


def csv_requests(path: Path, clips_dir: Path | None):
    """A MELD-format CSV's rows as Requests: each with its clip in `clips_dir` (None: text only), its true labels
    where the CSV has them, and its dialogue (a model trained with context turns reads as many as it was trained with)."""
    from mmsent.data.meld import read_meld_csv
    from mmsent.data.text_inputs import dialogue_inputs
    from mmsent.inference.predict import Request

    if clips_dir is not None and not clips_dir.is_dir():
        raise SettingsError(f"--clips-dir {clips_dir}: no such folder")
    rows = read_meld_csv(path, require_labels=False)
    return [Request(clip=clips_dir / row.clip_name if clips_dir is not None else None, text=row.text, name=row.clip_name,
                    labels=None if row.emotion is None else {"emotion": row.emotion, "sentiment": row.sentiment},
                    speaker=context.speaker, past=context.past, future=context.future)
            for row, context in zip(rows, dialogue_inputs(rows))]  # fmt: skip


def _requests(args: argparse.Namespace):
    from mmsent.inference.predict import Request

    if args.csv is not None:
        if args.clips or args.text is not None:
            raise SettingsError("give clips (and --text) or --csv, not both")
        return csv_requests(args.csv, args.clips_dir)
    if args.clips_dir is not None:
        raise SettingsError("--clips-dir goes with --csv (the CSV names the clips)")
    if not args.clips:
        if args.text is None:
            raise SettingsError("nothing to classify: give clip files, --text, or --csv")
        return [Request(text=args.text, name="(text)")]
    if args.text is not None and len(args.clips) > 1:
        raise SettingsError(f"--text describes one clip; {len(args.clips)} were given (use --csv for many with their transcripts)")
    return [Request(clip=path, text=args.text, name=str(path)) for path in args.clips]


def _run_predict(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.inference.predict import Predictor

    if args.out is not None and args.out.suffix.lower() not in OUTPUT_SUFFIXES:
        return error(f"--out {args.out}: the file name must end in {' or '.join(OUTPUT_SUFFIXES)}")
    if args.windows is not None and args.csv is not None and args.clips_dir is None:
        return error("--windows needs clips: give --clips-dir with --csv")
    if args.out is not None and (problem := unwritable(args.out)):  # before the work, not after it
        return error(f"--out {args.out}: {problem}")
    requests = _requests(args)
    predictor = Predictor(args.model_dir, batch_size=args.batch_size, workers=args.num_workers, asr_model=args.asr_model)
    predictions = predictor.predict(requests, every=args.windows, progress=None)
    if args.json:
        for prediction in predictions:
            print(json.dumps(prediction.as_dict()))
    else:
        print(format_table(predictions, windows=args.windows is not None))
    if args.out is not None:
        write_predictions(args.out, predictions)
        print(f"\npredictions: {args.out}", file=sys.stderr)
    labelled = [p for p in predictions if p.labels is not None]
    if labelled and args.windows is None:
        print("\n" + metrics_text(labelled), file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def format_table(predictions, windows: bool) -> str:
    rows = [["item", *(["window"] if windows else []), "emotion", "sentiment", "present", "issues"]]
    for p in predictions:
        window = [f"{p.start:.1f}-{p.end:.1f}s" if p.start is not None else "whole"] if windows else []
        rows.append([p.name, *window, f"{p.emotion} {p.probabilities['emotion'][p.emotion]:.2f}",
                     f"{p.sentiment} {p.probabilities['sentiment'][p.sentiment]:.2f}",
                     present_text(p) or "nothing", ",".join(p.issues) or "-"])  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def present_text(prediction) -> str:
    """The modalities a prediction had, a transcript from speech recognition marked: "text(asr),audio,video"."""
    return ",".join(m + ("(asr)" if m == "text" and prediction.transcribed else "")
                    for m, present in prediction.present.items() if present)  # fmt: skip


def metrics_text(predictions) -> str:
    import numpy as np

    from mmsent.labels import TASKS
    from mmsent.training.metrics import format_head_metrics, head_metrics

    lines = [f"metrics over {len(predictions)} labelled rows:"]
    for task, names in TASKS.items():
        targets = np.array([names.index(p.labels[task]) for p in predictions])
        predicted = np.array([names.index(getattr(p, task)) for p in predictions])
        lines.append(format_head_metrics(task, head_metrics(task, targets, predicted)))
    return "\n".join(lines)


def unwritable(path: Path) -> str | None:
    """Why no file can be written at `path` (its folder missing, not a folder, not writable), or None."""
    from mmsent.files import prove_writable

    if path.is_dir():
        return "is a folder"
    try:
        prove_writable(path.parent)
    except OSError as problem:
        return f"cannot write a file in {path.parent} ({problem.strerror or problem})"
    return None


def write_predictions(path: Path, predictions) -> None:
    from mmsent.files import write_atomic
    from mmsent.labels import TASKS

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".jsonl":
                handle.writelines(json.dumps(p.as_dict()) + "\n" for p in predictions)
                return
            columns = ["item", "start", "end", "emotion", "sentiment"]
            columns += [f"p_{task}_{name}" for task, names in TASKS.items() for name in names]
            columns += ["present", "issues", "text", "transcribed", "true_emotion", "true_sentiment"]
            writer = csv.writer(handle)
            writer.writerow(columns)
            for p in predictions:
                writer.writerow([p.name, p.start, p.end, p.emotion, p.sentiment,
                                 *(p.probabilities[task][name] for task, names in TASKS.items() for name in names),
                                 ",".join(m for m, present in p.present.items() if present), ",".join(p.issues), p.text or "",
                                 p.transcribed,
                                 *((p.labels["emotion"], p.labels["sentiment"]) if p.labels else ("", ""))])  # fmt: skip

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)


def _run_serve(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.inference.predict import Predictor
    from mmsent.inference.server import ServeConfig, serve

    cfg = ServeConfig(host=args.host, port=args.port, threads=args.threads, queue=args.queue, max_body_mb=args.max_body_mb, timeout=args.timeout)
    predictor = Predictor(args.model_dir, workers=1, asr_model=args.asr_model)
    serve(predictor, cfg, ready=lambda message: print(message, flush=True))
    print("stopped", flush=True)
    return EXIT_OK

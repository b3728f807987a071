"""``sentiment-lstm predict``: score reviews with a saved model."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from sentiment_lstm.cli.common import (
    CommandError,
    add_data_options,
    positive_int,
    read_options_from_args,
)

OUTPUT_FORMATS = ("text", "jsonl", "csv")
PREVIEW_CHARACTERS = 60


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="score reviews with a trained model",
        description="Print how positive and negative each review is. Reviews "
        "come from the arguments, from --input, or one per line from stdin.",
    )
    parser.add_argument("reviews", nargs="*", metavar="REVIEW", help="review text")
    parser.add_argument(
        "--model", required=True, type=Path, help="model directory from train"
    )
    parser.add_argument(
        "--input",
        type=Path,
        help="file of reviews (CSV, TSV, JSONL, pos/neg, folder, or one per line)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="write results to this file instead of stdout",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="text: one line per review; jsonl or csv: text, positive, "
        "negative, label per row (default: text, or csv/jsonl by --output's "
        "extension)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="reviews per forward pass (default: 256)",
    )
    add_data_options(parser, labels=False, format_flags=("--input-format",))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Score the reviews and write one result per review, in input order."""
    from sentiment_lstm.artifact import ArtifactError
    from sentiment_lstm.data import DataError, read_texts
    from sentiment_lstm.predictor import SentimentModel

    if args.reviews and args.input:
        parser.error("give reviews as arguments or with --input, not both")
    output_format = args.output_format or _format_from_path(args.output)

    try:
        model = SentimentModel.load(args.model)
    except ArtifactError as err:
        raise CommandError(str(err)) from err

    if args.input:
        try:
            options = read_options_from_args(args, require_labels=False)
            read = read_texts(args.input, options)
        except DataError as err:
            raise CommandError(str(err)) from err
        texts = [example.text for example in read.examples]
    elif args.reviews:
        texts = list(args.reviews)
    elif sys.stdin.isatty():
        parser.error("give reviews as arguments, with --input FILE, or on stdin")
    else:
        texts = _read_stdin_lines(sys.stdin)

    predictions = model.predict(texts, batch_size=args.batch_size)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as stream:
            write_predictions(predictions, output_format, stream)
    else:
        write_predictions(predictions, output_format, sys.stdout)
    return 0


def _format_from_path(path: Path | None) -> str:
    if path is None:
        return "text"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "text"


def _read_stdin_lines(stream: TextIO) -> list[str]:
    """Return one review per line, keeping empty lines so rows never shift."""
    lines = stream.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def write_predictions(predictions: Sequence, output_format: str, stream: TextIO) -> None:
    """Write predictions as text lines, JSON lines or CSV rows."""
    if output_format == "jsonl":
        for prediction in predictions:
            stream.write(json.dumps(prediction.to_dict(), ensure_ascii=False) + "\n")
    elif output_format == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["text", "positive", "negative", "label", "error"])
        for prediction in predictions:
            writer.writerow(_csv_row(prediction))
    else:
        for line in format_lines(predictions):
            stream.write(line + "\n")


def _csv_row(prediction) -> list[str]:
    if prediction.error is not None:
        return [prediction.text, "", "", "", prediction.error]
    return [
        prediction.text,
        f"{prediction.positive:.6f}",
        f"{prediction.negative:.6f}",
        prediction.label,
        "",
    ]


def format_lines(predictions: Iterable) -> Iterable[str]:
    """Yield lines such as ``87.3% positive  "the plot sags but the cast..."``."""
    for prediction in predictions:
        preview = _preview(prediction.text)
        if prediction.error is not None:
            yield f"    n/a           {preview}  ({prediction.error})"
            continue
        if prediction.label == "positive":
            share = prediction.positive
        else:
            share = prediction.negative
        yield f"{share * 100:5.1f}% {prediction.label:<8}  {preview}"


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > PREVIEW_CHARACTERS:
        flat = flat[: PREVIEW_CHARACTERS - 3].rstrip() + "..."
    return json.dumps(flat, ensure_ascii=False)

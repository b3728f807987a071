"""``sentiment-lstm evaluate``: measure a saved model on labelled reviews."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from sentiment_lstm.cli.common import (
    CommandError,
    add_data_options,
    positive_int,
    read_options_from_args,
)
from sentiment_lstm.cli.predict import add_backend_option, load_model

logger = logging.getLogger(__name__)

SPLIT_CHOICES = ("all", "train", "validation", "test")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a trained model on labelled reviews",
        description="Report accuracy, per-class precision, recall and F1, the "
        "confusion matrix and ROC-AUC of a model on labelled reviews.",
    )
    parser.add_argument(
        "--model", required=True, type=Path, help="model directory from train"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="labelled reviews: a file, a folder, or the dataset name rt-polarity",
    )
    parser.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="all",
        help="evaluate on all of --data, or on one part of the split the model "
        "was trained with, recreated from the seed and fractions saved in the "
        "model (default: all)",
    )
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=("text", "json"),
        default="text",
        help="report as an aligned table or as JSON (default: text)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="reviews per forward pass (default: 256)",
    )
    add_backend_option(parser)
    add_data_options(parser, format_flags=("--data-format",))
    parser.set_defaults(handler=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Score the labelled reviews and print the report."""
    from sentiment_lstm.data import (
        DataError,
        data_fingerprint,
        read_examples,
        resolve_data,
        split_examples,
    )
    from sentiment_lstm.metrics import classification_report, format_report

    model = load_model(args.model, args.backend)

    try:
        read = read_examples(resolve_data(args.data), read_options_from_args(args))
    except DataError as err:
        raise CommandError(str(err)) from err
    examples = read.examples
    if args.split != "all":
        training = model.metadata.get("training", {})
        split = model.metadata.get("split", {})
        # Parts given as their own files at training were not cut from --data.
        separate = {
            "validation": split.get("validation_data"),
            "test": split.get("test_data"),
        }
        if separate.get(args.split):
            raise CommandError(
                f"the model's {args.split} part was the file "
                f"{separate[args.split]} (--{args.split}-data), not a part of "
                f"--data; evaluate it with --data {separate[args.split]} "
                "--split all",
                usage=True,
            )
        try:
            parts = split_examples(
                examples,
                seed=training.get("seed", 0),
                validation_fraction=(
                    0.0
                    if separate["validation"]
                    else split.get("validation_fraction", 0.1)
                ),
                test_fraction=(
                    0.0 if separate["test"] else split.get("test_fraction", 0.1)
                ),
            )
        except DataError as err:
            raise CommandError(
                f"{err}; --split {args.split} needs the data the model was "
                "trained on, or use --split all"
            ) from err
        examples = dict(zip(SPLIT_CHOICES[1:], parts))[args.split]
        fingerprint = model.metadata.get("data", {}).get("fingerprint")
        # With separate files the fingerprint covers them too, so it cannot
        # be compared with --data alone.
        if (
            fingerprint
            and not any(separate.values())
            and fingerprint != data_fingerprint(read.files)
        ):
            logger.warning(
                "--data differs from the data the model was trained on, so "
                "--split %s does not recreate its %s split",
                args.split,
                args.split,
            )
    if not examples:
        raise CommandError(f"no labelled reviews to evaluate in {args.data}")

    probabilities = model.predict_proba(
        [example.text for example in examples], batch_size=args.batch_size
    )
    labels = [example.label for example in examples]
    scored = [i for i, p in enumerate(probabilities) if p == p]
    unscored = len(examples) - len(scored)
    if unscored:
        logger.warning("%d reviews have no tokens and are not scored", unscored)
    report = classification_report(
        [labels[i] for i in scored],
        [float(probabilities[i]) for i in scored],
        model.labels,
    )
    report["unscored_reviews"] = unscored
    report["model"] = str(args.model)
    report["data"] = args.data
    report["split"] = args.split

    if args.output_format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0

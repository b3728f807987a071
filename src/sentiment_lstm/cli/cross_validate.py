"""``sentiment-lstm cross-validate``: k-fold accuracy of a training setup."""

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
from sentiment_lstm.cli.train import add_model_options, resolve_options

logger = logging.getLogger(__name__)


def folds_count(text: str) -> int:
    """Parse a number of folds of at least 2 for argparse."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 folds, got {value}")
    return value


def open_fraction(text: str) -> float:
    """Parse a number strictly between 0 and 1 for argparse."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from err
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in (0, 1), got {value:g}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cross-validate`` subcommand."""
    parser = subparsers.add_parser(
        "cross-validate",
        help="measure a training setup with stratified k-fold cross-validation",
        description="Split the data into stratified, shuffled folds "
        "(scikit-learn StratifiedKFold with random_state=--seed), train on all "
        "folds but one and test on that one, for each fold. Within each "
        "training part, a stratified --validation-fraction picks the best "
        "epoch and stops training; the test fold is scored once, after "
        "training. Prints per-fold accuracy, macro F1 and seconds, then the "
        "mean and sample standard deviation. Takes the model and training "
        "flags of 'train'.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="labelled reviews: a file, a folder, or the dataset name rt-polarity",
    )
    parser.add_argument(
        "--folds",
        type=folds_count,
        default=10,
        help="number of stratified folds (default: 10)",
    )
    parser.add_argument(
        "--run-folds",
        type=positive_int,
        metavar="N",
        help="run only the first N folds, for a quick estimate (default: all)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=open_fraction,
        default=0.1,
        help="share of each training part held out to pick the best epoch "
        "(default: 0.1)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads of PyTorch; 1 is often faster while other jobs share "
        "the cores (default: PyTorch's choice, usually one per core)",
    )
    parser.add_argument(
        "--parallel-members",
        type=positive_int,
        metavar="N",
        help="train up to N ensemble members at once, each in a process of its "
        "own on one thread; the results equal a --threads 1 run (default: one "
        "per physical core, at most --ensemble-size)",
    )
    parser.add_argument(
        "--output-json",
        type=Path,
        metavar="FILE",
        help="write the settings, per-fold results and summary as JSON",
    )
    parser.add_argument(
        "--feature-cache",
        type=Path,
        metavar="DIR",
        help="folder of the contextual MiniLM feature cache "
        "(default: $SENTIMENT_LSTM_CACHE/features, else "
        "~/.cache/sentiment-lstm/features)",
    )
    parser.add_argument(
        "--no-feature-cache",
        action="store_true",
        help="compute contextual MiniLM features without reading or writing "
        "the cache",
    )
    add_data_options(parser)
    add_model_options(parser)
    parser.set_defaults(handler=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the folds, print the table, write the JSON; exit status 0."""
    from sentiment_lstm.crossval import CrossValidationConfig, cross_validate
    from sentiment_lstm.data import DataError, read_examples, resolve_data

    if args.run_folds is not None and args.run_folds > args.folds:
        parser.error(
            f"--run-folds ({args.run_folds}) cannot exceed --folds ({args.folds})"
        )
    options = resolve_options(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    parallel_members = args.parallel_members
    if parallel_members is None:
        from sentiment_lstm.predictor import physical_core_count

        ensemble_size = options.training_config.ensemble_size
        parallel_members = max(1, min(physical_core_count(), ensemble_size))
    cv_config = CrossValidationConfig(
        folds=args.folds,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        run_folds=args.run_folds,
        parallel_members=parallel_members,
    )
    try:
        examples = read_examples(
            resolve_data(args.data), read_options_from_args(args)
        ).examples
    except DataError as err:
        raise CommandError(str(err)) from err

    if args.output_json is not None and args.output_json.is_dir():
        raise CommandError(
            f"--output-json {args.output_json} is a folder; name a file in it, "
            f"such as {args.output_json / 'cross-validation.json'}",
            usage=True,
        )
    header_printed = False

    def print_fold(fold) -> None:
        # The header waits for the first fold, so a run that fails before
        # any fold ends prints nothing to stdout.
        nonlocal header_printed
        if not header_printed:
            print(
                f"{'fold':>4}  {'accuracy':>8}  {'macro F1':>8}  {'seconds':>7}  "
                "best epochs"
            )
            header_printed = True
        print(
            f"{fold.fold:>4}  {100 * fold.accuracy:>8.2f}  "
            f"{100 * fold.macro_f1:>8.2f}  {fold.seconds:>7.1f}  "
            + ", ".join(
                f"{best} of {run}"
                for best, run in zip(fold.best_epochs, fold.epochs_run)
            )
        )
        sys.stdout.flush()

    try:
        result = cross_validate(
            [example.text for example in examples],
            [example.label for example in examples],
            cv_config=cv_config,
            encoder_config=options.encoder_config,
            embedding_config=options.embedding_config,
            model_options=options.model_options,
            training_config=options.training_config,
            on_fold=print_fold,
        )
    except (DataError, ValueError) as err:
        raise CommandError(str(err)) from err

    summary = result.summary()
    print(
        f"mean  {100 * summary['accuracy_mean']:.2f} ± "
        f"{100 * summary['accuracy_std']:.2f}  "
        f"F1 {100 * summary['macro_f1_mean']:.2f} ± "
        f"{100 * summary['macro_f1_std']:.2f}  "
        f"{summary['seconds_mean']:.1f} s per fold"
    )
    if result.shared_seconds >= 0.05:
        print(
            f"shared setup before the folds: {result.shared_seconds:.1f} s "
            f"({summary['shared_seconds_per_fold']:.1f} s per fold run)"
        )
    if args.output_json is not None:
        values = result.to_dict()
        values["settings"]["data"] = args.data
        values["settings"]["preset"] = args.preset
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(
            json.dumps(values, indent=2, default=str) + "\n", encoding="utf-8"
        )
        logger.info("wrote %s", args.output_json)
    return 0

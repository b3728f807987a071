"""``sentiment-lstm train``: train a model on labelled reviews and save it."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

from sentiment_lstm.cli.common import (
    CommandError,
    add_data_options,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    read_options_from_args,
)

logger = logging.getLogger(__name__)

ARCHITECTURE_ALIASES = {
    "unidirectional": "unidirectional",
    "uni_directional": "unidirectional",
    "uni-directional": "unidirectional",
    "uni": "unidirectional",
    "bidirectional": "bidirectional",
    "bi_directional": "bidirectional",
    "bi-directional": "bidirectional",
    "bi": "bidirectional",
}


def architecture(text: str) -> str:
    """Map an architecture name or one of its spellings to its canonical name."""
    try:
        return ARCHITECTURE_ALIASES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown architecture {text!r}; use unidirectional or bidirectional "
            "(uni_directional, bi_directional and bi-directional are accepted too)"
        ) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a model on labelled reviews",
        description="Train an LSTM sentiment classifier and save the epoch with "
        "the best validation accuracy. The original project's snake_case flags "
        "(--num_epoch, --batch_size, ...) are accepted as aliases.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="labelled reviews: a file, a folder, or the dataset name rt-polarity",
    )
    parser.add_argument(
        "--output-dir",
        "--output_dir",
        type=Path,
        help="model directory to write (default: models/<data>-<architecture>)",
    )
    add_data_options(parser)

    split = parser.add_argument_group("splitting")
    split.add_argument(
        "--validation-data",
        help="separate labelled reviews for validation instead of a split",
    )
    split.add_argument(
        "--test-data", help="separate labelled reviews for testing instead of a split"
    )
    split.add_argument(
        "--validation-fraction",
        type=fraction,
        default=0.1,
        help="share of --data held out for validation (default: 0.1)",
    )
    split.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.1,
        help="share of --data held out for testing; 0 for none (default: 0.1)",
    )

    text = parser.add_argument_group("text")
    text.add_argument(
        "--max-length",
        type=positive_int,
        default=400,
        help="tokens kept per review; longer reviews keep their first "
        "MAX_LENGTH tokens, in training and prediction alike (default: 400)",
    )
    text.add_argument(
        "--min-frequency",
        type=positive_int,
        default=1,
        help="training-split occurrences a word needs to enter the vocabulary "
        "(default: 1)",
    )
    text.add_argument(
        "--max-vocab-size",
        type=positive_int,
        help="keep only this many most frequent words (default: no limit)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--architecture",
        type=architecture,
        default="unidirectional",
        help="unidirectional or bidirectional LSTM (default: unidirectional)",
    )
    model.add_argument(
        "--lstm-units",
        "--lstm_units",
        type=positive_int,
        default=100,
        help="LSTM units per direction (default: 100)",
    )
    model.add_argument(
        "--num-layers",
        "--num_layers",
        type=positive_int,
        default=1,
        help="stacked LSTM layers (default: 1)",
    )
    model.add_argument(
        "--embedding-size",
        "--embedding_size",
        type=positive_int,
        default=100,
        help="word vector size (default: 100)",
    )
    model.add_argument(
        "--dropout-keep-prob",
        "--dropout_keep_prob",
        type=probability,
        default=0.5,
        help="probability of keeping an activation on the LSTM's input and "
        "output; 1 disables dropout (default: 0.5)",
    )
    model.add_argument(
        "--embedding-dropout",
        type=fraction,
        default=0.0,
        help="probability of dropping a whole word vector (default: 0)",
    )
    model.add_argument(
        "--pooling",
        choices=("last", "mean", "max"),
        default="last",
        help="review vector: final LSTM state, or mean or max over time "
        "(default: last)",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--num-epochs",
        "--num_epochs",
        "--num-epoch",
        "--num_epoch",
        dest="num_epochs",
        type=positive_int,
        default=10,
        help="maximum passes over the training split (default: 10)",
    )
    training.add_argument(
        "--batch-size",
        "--batch_size",
        type=positive_int,
        default=32,
        help="reviews per optimisation step (default: 32)",
    )
    training.add_argument(
        "--learning-rate",
        "--learning_rate",
        type=positive_float,
        default=0.0005,
        help="Adam learning rate (default: 0.0005)",
    )
    training.add_argument(
        "--required-acc-checkpoint",
        "--required_acc_checkpoint",
        type=probability,
        default=0.0,
        help="validation accuracy a model must reach before it is saved "
        "(default: 0, always save the best)",
    )
    training.add_argument(
        "--patience",
        type=non_negative_int,
        default=3,
        help="stop after this many epochs without a better validation accuracy; "
        "0 trains every epoch (default: 3)",
    )
    training.add_argument(
        "--max-grad-norm",
        type=positive_float,
        default=5.0,
        help="clip gradients to this L2 norm (default: 5)",
    )
    training.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="L2 penalty of the optimiser (default: 0)",
    )
    training.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the split, initialisation, batch order and dropout "
        "(default: 0)",
    )
    parser.set_defaults(handler=run)


def default_output_dir(data: str, architecture_name: str) -> Path:
    """Name a model directory after the data and the architecture."""
    stem = Path(data.rstrip("/\\")).name or "model"
    stem = re.sub(r"\.(pos|neg|csv|tsv|tab|jsonl|ndjson|txt)$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return Path("models") / f"{stem}-{architecture_name}"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train and save; exit status 1 if no epoch reached the required accuracy."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from sentiment_lstm.data import DataError
    from sentiment_lstm.pipeline import DataSpec, load_splits, train_model
    from sentiment_lstm.text import TextEncoderConfig
    from sentiment_lstm.training import TrainingConfig

    if args.weight_decay < 0:
        parser.error(f"--weight-decay must not be negative, got {args.weight_decay}")
    if args.validation_data is None and args.validation_fraction == 0:
        parser.error(
            "--validation-fraction 0 leaves no reviews to pick the best epoch; "
            "give --validation-data or a fraction above 0"
        )
    if args.validation_fraction + args.test_fraction >= 1:
        parser.error(
            f"--validation-fraction ({args.validation_fraction:g}) plus "
            f"--test-fraction ({args.test_fraction:g}) must stay below 1"
        )
    output_dir = args.output_dir or default_output_dir(args.data, args.architecture)
    spec = DataSpec(
        data=args.data,
        read_options=read_options_from_args(args),
        validation_data=args.validation_data,
        test_data=args.test_data,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
    )
    encoder_config = TextEncoderConfig(
        max_length=args.max_length,
        min_frequency=args.min_frequency,
        max_vocab_size=args.max_vocab_size,
    )
    model_options = {
        "embedding_dim": args.embedding_size,
        "hidden_dim": args.lstm_units,
        "num_layers": args.num_layers,
        "bidirectional": args.architecture == "bidirectional",
        "dropout": 1.0 - args.dropout_keep_prob,
        "embedding_dropout": args.embedding_dropout,
        "pooling": args.pooling,
    }
    training_config = TrainingConfig(
        num_epochs=args.num_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        required_accuracy=args.required_acc_checkpoint,
        patience=args.patience or None,
        seed=args.seed,
        max_grad_norm=args.max_grad_norm,
        weight_decay=args.weight_decay,
    )

    try:
        splits = load_splits(spec, seed=args.seed)
        with logging_redirect_tqdm():
            outcome = train_model(
                splits,
                output_dir,
                encoder_config=encoder_config,
                model_options=model_options,
                training_config=training_config,
            )
    except (DataError, ValueError) as err:
        raise CommandError(str(err)) from err

    best = outcome.result.best
    if not outcome.saved:
        raise CommandError(
            f"no epoch reached the required validation accuracy "
            f"{args.required_acc_checkpoint:g} (best {best.validation_accuracy:.3f} "
            f"at epoch {outcome.result.best_epoch}), so no model was saved; "
            "lower --required-acc-checkpoint or train longer"
        )
    logger.info("model saved to %s", output_dir)
    return 0

"""``sentiment-lstm evaluate``: measure a saved model on labelled reviews."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from sentiment_lstm.cli.common import (
    LABELLED_FORMAT_CHOICES,
    CommandError,
    add_data_options,
    check_stdout_writable,
    path_argument,
    positive_int,
    read_options_from_args,
)
from sentiment_lstm.cli.predict import add_backend_option, load_model

logger = logging.getLogger(__name__)

SPLIT_CHOICES = ("all", "train", "validation", "test")
# Reviews encoded and scored between updates of the progress bar, as many as
# predict's default --chunk-size.
SCORING_CHUNK_REVIEWS = 8192


def report_format(text: str) -> str:
    """Parse --format, the report's format, pointing data formats to --data-format."""
    if text in ("text", "json"):
        return text
    hint = ""
    if text in LABELLED_FORMAT_CHOICES:
        hint = f"; to read --data as {text}, pass --data-format {text}"
    elif text == "lines":
        hint = (
            "; evaluate needs labelled reviews, which text lines do not have: "
            "pass a pos/neg pair, a folder, or a CSV, TSV or JSONL file with "
            "a label column"
        )
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from 'text', 'json'){hint}"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a trained model on labelled reviews",
        description="Report accuracy, per-class precision, recall and F1, the "
        "confusion matrix and ROC-AUC of a model on labelled reviews.",
    )
    parser.add_argument(
        "--model", required=True, type=path_argument, help="model directory from train"
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
        type=report_format,
        default="text",
        metavar="{text,json}",
        help="report as an aligned table or as JSON (default: text)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="reviews per forward pass (default: 256)",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="hide the progress bar, which is shown while scoring on a terminal",
    )
    add_backend_option(parser)
    add_data_options(parser, format_flags=("--data-format",))
    parser.set_defaults(handler=run, command_parser=parser)


# evaluate warns when at least this share of the compared reviews (scored,
# of 5 or more words) are training reviews. Different reviews of the same
# words are rare at that length but do occur.
SEEN_WARNING_SHARE = 0.01


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Score the labelled reviews and print the report."""
    from sentiment_lstm.data import DataError, read_examples, resolve_data
    from sentiment_lstm.data.readers import detect_format
    from sentiment_lstm.metrics import classification_report, format_report
    from sentiment_lstm.provenance import (
        MIN_COMPARED_WORDS,
        TRAINING_REVIEWS_KEY,
        training_overlap,
    )

    check_stdout_writable("the report")
    model = load_model(args.model, args.backend, args.threads)

    options = read_options_from_args(args)
    try:
        path = resolve_data(args.data)
        read = read_examples(path, options)
        data_format = options.format or detect_format(path)
    except DataError as err:
        raise CommandError(str(err)) from err
    examples = read.examples
    if args.split != "all":
        examples = _model_split_part(args, model.metadata, read, options, data_format)
    if not examples:
        raise CommandError(f"no labelled reviews to evaluate in {args.data}")
    probabilities = _score(model, examples, args)
    labels = [example.label for example in examples]
    scored = [i for i, p in enumerate(probabilities) if p == p]
    unscored = len(examples) - len(scored)
    if not scored:
        raise CommandError(
            f"none of the {len(examples)} reviews of {args.data} can be scored, "
            "because each is empty once normalised (HTML line breaks and spaces "
            "alone have no tokens); check that the text column holds the reviews, "
            "or pass --text-column"
        )
    # Only the scored reviews count in the figures.
    compared, seen = training_overlap(
        (examples[i] for i in scored), model.metadata.get(TRAINING_REVIEWS_KEY)
    )
    if args.split == "all":
        _warn_if_training_data(args, model.metadata, read, seen, compared)
    elif seen and args.split != "train":
        logger.info(
            "%d of the %d reviews of %d or more words of the %s part also occur "
            "among the training reviews, because the data repeats them; they "
            "count in the figures",
            seen,
            compared,
            MIN_COMPARED_WORDS,
            args.split,
        )
    if unscored:
        if unscored == 1:
            logger.warning("1 review has no tokens and is not scored")
        else:
            logger.warning("%d reviews have no tokens and are not scored", unscored)
    present = {labels[i] for i in scored}
    if len(present) == 1:
        (only,) = present
        logger.warning(
            "every scored review of %s is %s, so accuracy shows only how many "
            "the model calls %s, the other class's precision, recall and F1 "
            "are 0, and ROC-AUC is undefined; evaluate on data with both classes",
            args.data,
            model.labels[only],
            model.labels[only],
        )
    report = classification_report(
        [labels[i] for i in scored],
        [float(probabilities[i]) for i in scored],
        model.labels,
    )
    report["unscored_reviews"] = unscored
    # None for models saved before the training reviews were recorded.
    report["training_reviews_seen"] = seen
    report["training_reviews_compared"] = compared
    report["model"] = str(args.model)
    report["data"] = args.data
    report["split"] = args.split

    if args.output_format == "json":
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))
    return 0


def _warn_if_training_data(
    args: argparse.Namespace,
    metadata: dict[str, Any],
    read: Any,
    seen: int | None,
    compared: int,
) -> None:
    """Warn when ``--data`` contains reviews the model was trained on.

    They count in the figures, which then overstate the model's accuracy on
    reviews it has not seen. ``seen`` is the count of such reviews among the
    ``compared`` scored reviews of 5 or more words, or None for a model that
    did not record them, which is warned about only when ``--data`` gives
    all of its training data.
    """
    from sentiment_lstm.provenance import MIN_COMPARED_WORDS

    from sentiment_lstm.provenance import examples_fingerprint, review_set_fingerprint

    data = metadata.get("data", {})
    in_order = data.get("examples_fingerprint")
    # Models saved before the set was recorded can only match in order.
    as_set = data.get("review_set_fingerprint")
    held_out = _held_out_part(metadata)
    if in_order and examples_fingerprint(read.examples) == in_order:
        # --split recreates the split from the reviews in this order.
        fix = f"pass {held_out} to evaluate the part it was not trained on"
    elif as_set and review_set_fingerprint(read.examples) == as_set:
        fix = (
            "to evaluate the part it was not trained on, pass the training "
            f"data in its original order with {held_out}"
        )
    elif seen and seen >= compared * SEEN_WARNING_SHARE:
        fix = (
            "evaluate on reviews it was not trained on, or on its held-out "
            f"part with its training data and {held_out}"
        )
    else:
        return
    if not held_out.startswith("--split"):
        # A held-out file of its own is read whatever the order of --data.
        fix = f"evaluate the part it was not trained on with {held_out}"

    if seen is None or not compared:
        contains = "contains the reviews"
    else:
        contains = (
            f"contains {seen} of the reviews ({seen / compared:.1%} of its "
            f"{compared} scored reviews of {MIN_COMPARED_WORDS} or more words)"
        )
    logger.warning(
        "%s %s that %s was trained on, so these figures overstate its "
        "accuracy on reviews it has not seen; %s",
        args.data,
        contains,
        args.model,
        fix,
    )


def _held_out_part(metadata: dict[str, Any]) -> str:
    """Return the evaluate flags that read a model's held-out reviews.

    The test part, else the validation part: ``--split test`` where it was
    cut from the training data, ``--data FILE --split all`` where it was a
    file of its own.
    """
    split = metadata.get("split", {})
    for part in ("test", "validation"):
        path = split.get(f"{part}_data")
        if path:
            relative = (
                ""
                if Path(path).is_absolute()
                else f" (--{part}-data, relative to the folder train ran in)"
            )
            return f"--data {shlex.quote(path)} --split all{relative}"
        if split.get(f"{part}_fraction") != 0:
            return f"--split {part}"
    return "--split test"


def _model_split_part(
    args: argparse.Namespace,
    metadata: dict[str, Any],
    read: Any,
    options: Any,
    data_format: str,
) -> list[Any]:
    """Recreate the model's split of ``--data`` and return the part asked for.

    Raises:
        CommandError: If the part was a file of its own at training, or
            training left it out with a fraction of 0. Also if the data is too
            small to split, or the reviews read differ from those the model
            was trained on.
    """
    from sentiment_lstm.data import DataError, data_fingerprint, split_examples
    from sentiment_lstm.provenance import (
        examples_fingerprint,
        read_option_differences,
        read_options_record,
    )

    training = metadata.get("training", {})
    split = metadata.get("split", {})
    data = metadata.get("data", {})
    # Parts given as their own files at training were not cut from --data.
    separate = {
        "validation": split.get("validation_data"),
        "test": split.get("test_data"),
    }
    if separate.get(args.split):
        path = separate[args.split]
        # train records the path as it was given, so a relative one may name
        # another file from here.
        relative = (
            "" if Path(path).is_absolute() else ", relative to the folder train ran in"
        )
        raise CommandError(
            f"the model's {args.split} part was the file {path} "
            f"(--{args.split}-data{relative}), not a part of --data; evaluate it "
            f"with --data {path} --split all",
            usage=True,
        )

    # Models saved before the read was recorded lack these values, and only
    # the data files can be compared for them.
    saved_options = data.get("read_options")
    saved_examples = data.get("examples_fingerprint")
    saved_files = data.get("data_files_fingerprint")
    problem = None
    if saved_options is not None and saved_examples and saved_files:
        if examples_fingerprint(read.examples) != saved_examples:
            current = read_options_record(options, data_format)
            same_files = data_fingerprint(read.files) == saved_files
            differences = read_option_differences(
                saved_options,
                current,
                saved_columns=data.get("columns"),
                current_columns=read.columns,
                compare_format=same_files,
                skipped_rows=bool(read.bad_rows) or bool(data.get("bad_rows_skipped")),
            )
            raise CommandError(
                _changed_read(args.split, differences, same_files), usage=True
            )
    else:
        fingerprint = data.get("fingerprint")
        # With separate files the fingerprint covers them too, so it cannot
        # be compared with --data alone. The file names count in it, so a
        # renamed copy of the same data differs too, and only a warning is
        # given.
        if (
            fingerprint
            and not any(separate.values())
            and fingerprint != data_fingerprint(read.files)
        ):
            problem = (
                f"--data differs from the data the model was trained on, so "
                f"--split {args.split} may not recreate its {args.split} split "
                "and the part may contain reviews the model was trained on"
            )

    try:
        parts = split_examples(
            read.examples,
            seed=training.get("seed", 0),
            validation_fraction=(
                0.0 if separate["validation"] else split.get("validation_fraction", 0.1)
            ),
            test_fraction=(
                0.0 if separate["test"] else split.get("test_fraction", 0.1)
            ),
        )
    except DataError as err:
        # The split's own fixes name train's flags, which evaluate lacks, so
        # only its reason is kept.
        reason = str(err).partition("; ")[0]
        raise CommandError(
            f"{reason}; --split {args.split} needs the data the model was "
            "trained on, or use --split all"
        ) from err
    if problem is not None:
        logger.warning("%s", problem)
    part = dict(zip(SPLIT_CHOICES[1:], parts))[args.split]
    if not part and split.get(f"{args.split}_fraction") == 0:
        raise CommandError(
            f"the model has no {args.split} part, because it was trained with "
            f"--{args.split}-fraction 0; evaluate other labelled reviews with "
            "--split all",
            usage=True,
        )
    return part


def _changed_read(split: str, differences: list[str], same_files: bool) -> str:
    """Describe why ``--data`` gave other reviews than at training.

    The split is recreated from the reviews in reading order, so other
    reviews, or the same ones in another order, give another split.

    Returns:
        An error message that names the changed read options or data files.
    """
    cause = f"--split {split} cannot recreate the model's {split} part, because "
    fix = (
        "Another split would mix the reviews the model was trained on with "
        "those it was not; pass the data and read options of training, or "
        "evaluate other labelled reviews with --split all"
    )
    if same_files:
        if differences:
            return (
                f"{cause}the read options differ from training: "
                f"{'; '.join(differences)}. Other options read other reviews. "
                f"{fix}"
            )
        return (
            f"{cause}the reviews read from --data differ from those the "
            "model was trained on, although the files and read options are "
            "the same; a different sentiment-lstm version may read the files "
            f"differently. {fix}"
        )
    message = (
        f"{cause}--data gives other reviews than the data the model was "
        "trained on (other files, or the same reviews in another order)"
    )
    if differences:
        message += f", and the read options differ too: {'; '.join(differences)}"
    return f"{message}. {fix}"


def _score(model: Any, examples: list[Any], args: argparse.Namespace) -> Any:
    """Return P(positive) per example, with a progress bar on a terminal."""
    import numpy as np

    from sentiment_lstm.scoring import progress_bar, score_in_chunks

    texts = [example.text for example in examples]
    show = None if args.progress and not args.quiet else False
    chunks = score_in_chunks(
        texts,
        SCORING_CHUNK_REVIEWS,
        lambda chunk: model.predict_proba(chunk, batch_size=args.batch_size),
        progress_bar(show, total=len(texts)),
    )
    return np.concatenate(chunks) if chunks else np.zeros(0)

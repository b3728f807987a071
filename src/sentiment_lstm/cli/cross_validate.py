"""``sentiment-lstm cross-validate``: k-fold accuracy of a training setup."""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentiment_lstm import interrupts
from sentiment_lstm.cli.common import (
    CommandError,
    add_threads_option,
    ascii_float,
    ascii_int,
    add_data_options,
    check_stdout_writable,
    file_path_argument,
    logs_above_progress_bars,
    missing_training_packages,
    path_argument,
    positive_int,
    probability,
    read_options_from_args,
)
from sentiment_lstm.cli.train import (
    add_model_options,
    import_training_modules,
    resolve_options,
)
from sentiment_lstm.files import (
    DEFAULT_FILE_MODE,
    descriptor_stream,
    inherited_descriptor,
    write_failure_advice,
    write_text_atomic,
)

if TYPE_CHECKING:
    from sentiment_lstm.crossval import CrossValidationResult
    from sentiment_lstm.data import Example, ReadOptions

logger = logging.getLogger(__name__)

# Flags of 'train' that have no meaning in cross-validation, with the reason
# and what to use instead. They are rejected with that text rather than with
# argparse's "unrecognized arguments".
TRAIN_ONLY_FLAGS: dict[tuple[str, ...], tuple[str, int | str]] = {
    ("--output-dir", "--output_dir"): (
        "cross-validate saves no model; write its results with --output-json "
        "FILE, or save a model with 'sentiment-lstm train --output-dir'",
        "?",
    ),
    ("--overwrite",): (
        "cross-validate saves no model and replaces an --output-json file "
        "anyway; drop --overwrite",
        0,
    ),
    ("--resume",): (
        "cross-validate writes no checkpoints to resume from; run it again, or "
        "run the first N folds with --run-folds N",
        0,
    ),
    ("--validation-data",): (
        "each training part holds out its own stratified --validation-fraction "
        "to pick the best epoch; a separate validation file is not supported",
        "?",
    ),
    ("--test-data",): (
        "each fold is the test data in turn; to score a separate file, save a "
        "model with 'sentiment-lstm train' and run 'sentiment-lstm evaluate'",
        "?",
    ),
    ("--test-fraction",): (
        "each fold is the test data in turn, so the test share is 1/--folds; "
        "set --folds instead",
        "?",
    ),
}


class TrainOnlyFlag(argparse.Action):
    """Reject a ``train`` flag that does not apply here, with the reason."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        reason: str,
        nargs: int | str = "?",
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)
        self.reason = reason

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        raise argparse.ArgumentError(
            self, f"does not apply to cross-validate: {self.reason}"
        )


def folds_count(text: str) -> int:
    """Parse a number of folds of at least 2 for argparse."""
    try:
        value = ascii_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected at least 2 folds, got {value}")
    return value


def open_fraction(text: str) -> float:
    """Parse a number strictly between 0 and 1 for argparse."""
    try:
        value = ascii_float(text)
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
        "mean and sample standard deviation (n/a for one fold). Takes the "
        "data-reading, preset, text, embedding, model and training flags of "
        "'train', and ignores --required-acc-checkpoint, because it saves no "
        "model. --output-dir, --resume, --validation-data, --test-data and "
        "--test-fraction do not apply.",
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
        "--no-progress",
        dest="progress",
        action="store_false",
        help="hide the progress bar of each epoch's batches, which is shown on "
        "a terminal while members train in this process (not with "
        "--parallel-members above 1); the line after each fold stays",
    )
    add_threads_option(parser)
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
        type=file_path_argument,
        metavar="FILE",
        help="write the settings, per-fold results and summary as JSON",
    )
    parser.add_argument(
        "--feature-cache",
        type=path_argument,
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
    parser.add_argument(
        "--required-acc-checkpoint",
        "--required_acc_checkpoint",
        type=probability,
        metavar="ACCURACY",
        help="accepted so that 'train' commands run unchanged, and ignored: "
        "cross-validate saves no model for an accuracy to gate",
    )
    for flags, (reason, nargs) in TRAIN_ONLY_FLAGS.items():
        parser.add_argument(
            *flags,
            action=TrainOnlyFlag,
            reason=reason,
            nargs=nargs,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
    parser.set_defaults(handler=run, command_parser=parser)


def check_output_json(path: Path) -> None:
    """Raise CommandError unless the results JSON can be written to ``path``.

    Runs before any training, so that a bad path costs no training time.
    Missing parent folders are allowed, because the write creates them, but
    the nearest existing one must be a folder that accepts new files.
    """
    if inherited_descriptor(path) is not None:
        # Written through the descriptor, not as a file in /dev.
        return
    if str(path) == "-":
        # Other commands read "-" as stdout, where the table goes here.
        raise CommandError(
            "--output-json - would write a file named '-'; the table of folds "
            "goes to stdout, so name a file, or /dev/stdout to get both there",
            usage=True,
        )
    try:
        path_is_folder = path.is_dir()
        folder = path.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    except OSError as err:
        # Path.is_dir and Path.exists raise for a name that is too long or a
        # folder that cannot be searched.
        raise CommandError(
            f"--output-json {path}: {err.strerror or err}; name another file",
            usage=True,
        ) from err
    if path_is_folder:
        raise CommandError(
            f"--output-json {path} is a folder; name a file in it, "
            f"such as {path / 'cross-validation.json'}",
            usage=True,
        )
    if not folder.is_dir():
        raise CommandError(
            f"--output-json {path}: {folder} is a file, not a folder; name a "
            "path that does not pass through a file",
            usage=True,
        )
    # os.access reports every folder writable for root, even /proc, which
    # accepts no new files, so the check creates a file instead.
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sentiment-lstm-"):
            pass
    except OSError as err:
        raise CommandError(
            f"--output-json {path}: cannot create files in {folder} "
            f"({err.strerror or err}); name a file in a folder you can write to",
            usage=True,
        ) from err


def reject_output_json_among_data(path: Path, data_files: Sequence[Path]) -> None:
    """Raise CommandError if ``path`` is one of the files the run reads.

    The results JSON would otherwise replace that file after the run.
    """
    from sentiment_lstm.scoring import same_file

    for data_file in data_files:
        if same_file(data_file, path):
            raise CommandError(
                f"--output-json {path} is the input file {data_file}, which the "
                "results would replace; name another file",
                usage=True,
            )


def reject_output_json_in_model(path: Path) -> None:
    """Raise CommandError if ``path`` is, or would become, a file of a model folder.

    See :func:`sentiment_lstm.artifact.model_folder_of`. Other files there,
    such as an earlier results JSON, are allowed.
    """
    from sentiment_lstm.artifact import model_folder_of

    folder = model_folder_of(path)
    if folder is not None:
        raise CommandError(
            f"--output-json {path} is a file of the model or interrupted run in "
            f"{folder}, which the results would replace; name a file outside "
            "that folder",
            usage=True,
        )


def write_output_json(path: Path, text: str) -> None:
    """Write the results JSON to ``path``, creating missing parent folders.

    A regular file is replaced atomically. /dev/stdout, /dev/stderr and
    /dev/fd/N are written through the process's own descriptor, and another
    path that exists but is not a regular file, such as a named pipe, is
    written in place.

    Raises:
        CommandError: If the write fails. The message names the file in the
            temporary folder that contains the JSON instead. If that write
            fails too, the JSON is printed to stdout and the message reports that.
    """
    descriptor = inherited_descriptor(path)
    try:
        if descriptor is not None:
            with descriptor_stream(descriptor) as stream:
                stream.write(text)
        elif path.exists() and not path.is_file():
            path.write_text(text, encoding="utf-8")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # resolve() writes through a symbolic link instead of replacing it
            target = path.resolve()
            # a replaced file keeps its permissions
            mode = (
                stat.S_IMODE(target.stat().st_mode)
                if target.is_file()
                else DEFAULT_FILE_MODE
            )
            write_text_atomic(target, text, mode)
    except OSError as err:
        failure = f"cannot write --output-json {path}: {err}{write_failure_advice(err)}"
    else:
        return
    saved = _save_in_temporary_folder(text)
    if saved is None:
        print(text, end="")
        raise CommandError(f"{failure}; the results JSON was printed to stdout instead")
    raise CommandError(f"{failure}; the results JSON was saved to {saved} instead")


def _save_in_temporary_folder(text: str) -> Path | None:
    """Write text to a new file in the temporary folder and return its path.

    Returns None if the file cannot be created or written.
    """
    try:
        handle, name = tempfile.mkstemp(
            prefix="sentiment-lstm-cross-validation-", suffix=".json"
        )
    except OSError:
        return None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError:
        Path(name).unlink(missing_ok=True)
        return None
    return Path(name)


def collect_provenance(
    examples: Sequence[Example], read_options: ReadOptions, data_format: str
) -> dict[str, Any]:
    """Return the results JSON's record of the reviews read and the software.

    The read options and the fingerprint of the reviews tell which reviews
    were split into folds, such as those left by other ``--stars`` cut-offs.
    The PyTorch thread count and package versions can change the last digits.
    """
    import torch

    from sentiment_lstm.pipeline import package_versions
    from sentiment_lstm.provenance import examples_fingerprint, read_options_record

    return {
        "read_options": read_options_record(read_options, data_format),
        "examples_fingerprint": examples_fingerprint(examples),
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }


def format_spread(mean: float, std: float | None) -> str:
    """Format a mean and standard deviation as percentages, with n/a for None."""
    spread = "n/a" if std is None else f"{100 * std:.2f}"
    return f"{100 * mean:.2f} ± {spread}"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run the folds, print the table, write the JSON; exit status 0."""
    try:
        import_training_modules()
        from sentiment_lstm.crossval import (
            CrossValidationConfig,
            CrossValidationFailed,
            cross_validate,
        )
    except ImportError as err:
        raise missing_training_packages("cross-validate", err) from err
    from sentiment_lstm.data import DataError, read_examples, resolve_data
    from sentiment_lstm.data.readers import detect_format

    if args.run_folds is not None and args.run_folds > args.folds:
        parser.error(
            f"--run-folds ({args.run_folds}) cannot exceed --folds ({args.folds})"
        )
    if args.output_json is not None:
        check_output_json(args.output_json)
        reject_output_json_in_model(args.output_json)
    # With --output-json, the results also go to a file, so a closed stdout
    # loses nothing.
    check_stdout_writable("the table of folds", closed_ok=args.output_json is not None)
    if args.required_acc_checkpoint is not None:
        logger.warning(
            "--required-acc-checkpoint %g is ignored: cross-validate saves no "
            "model, so no accuracy gates a save",
            args.required_acc_checkpoint,
        )
    options = resolve_options(args)
    import torch

    torch.set_num_threads(args.threads)
    from sentiment_lstm.predictor import physical_core_count

    parallel_members = args.parallel_members
    ensemble_size = options.training_config.ensemble_size
    if parallel_members is None:
        parallel_members = max(1, min(physical_core_count(), ensemble_size))
    else:
        if parallel_members > ensemble_size:
            logger.warning(
                "--parallel-members %d: an ensemble of %d trains at most %d at " "once",
                parallel_members,
                ensemble_size,
                ensemble_size,
            )
        at_once = min(parallel_members, ensemble_size)
        if at_once > physical_core_count():
            logger.warning(
                "%d member processes at once are more than the %d physical "
                "cores, so they take turns on the cores and the run is no faster",
                at_once,
                physical_core_count(),
            )
    cv_config = CrossValidationConfig(
        folds=args.folds,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        run_folds=args.run_folds,
        parallel_members=parallel_members,
    )
    read_options = read_options_from_args(args)
    try:
        path = resolve_data(args.data)
        read = read_examples(path, read_options)
        data_format = read_options.format or detect_format(path)
    except DataError as err:
        raise CommandError(str(err)) from err
    examples = read.examples
    if args.output_json is not None:
        vectors = args.pretrained_vectors
        reject_output_json_among_data(
            args.output_json, [*read.files, *([vectors] if vectors else [])]
        )

    header_printed = False
    folds_done = 0
    # A failed write to stdout, after which the folds go on into --output-json.
    stdout_failures: list[OSError] = []

    def print_fold(fold) -> None:
        nonlocal folds_done
        folds_done += 1
        if not stdout_failures:
            _print_to_stdout(args, stdout_failures, lambda: _print_fold_row(fold))

    def _print_fold_row(fold) -> None:
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

    folds = cv_config.run_folds or cv_config.folds
    saving = (examples, read_options, data_format)
    # The result once every fold has run, and whether it was reported.
    finished: list[CrossValidationResult] = []
    reported = False
    try:
        with logs_above_progress_bars():
            finished.append(
                cross_validate(
                    [example.text for example in examples],
                    [example.label for example in examples],
                    cv_config=cv_config,
                    encoder_config=options.encoder_config,
                    embedding_config=options.embedding_config,
                    model_options=options.model_options,
                    training_config=options.training_config,
                    on_fold=print_fold,
                    show_progress=None if args.progress else False,
                )
            )
        # A Ctrl-C or SIGTERM from here on waits until the results are written.
        with interrupts.deferred():
            _report(args, finished[0], saving, stdout_failures)
            reported = True
    except CrossValidationFailed as err:
        stopped = _stopped_after(args, err.partial, folds_done, folds, saving)
        raise CommandError(f"{err}; {stopped}") from err
    except (DataError, ValueError) as err:
        raise CommandError(str(err)) from err
    except KeyboardInterrupt as err:
        partial = getattr(err, "partial", None)
        if not finished and partial is not None and partial.complete:
            # The signal came after the last fold, inside cross_validate.
            finished.append(partial)
        if not finished:
            # The message replaces "interrupted" or "terminated".
            raise KeyboardInterrupt(
                _stopped_after(args, partial, folds_done, folds, saving)
            ) from err
        if not reported:
            # The signal came between the last fold and the report.
            _report(args, finished[0], saving, stdout_failures)
        written = "" if args.output_json is None else f" and in {args.output_json}"
        raise KeyboardInterrupt(
            f"interrupted after the last fold; the results are above{written}"
        ) from None
    if stdout_failures:
        err = stdout_failures[0]
        raise CommandError(
            f"stdout: cannot write the output: {err.strerror or err}; stdout may "
            f"contain part of it, and the results of every fold are in "
            f"{args.output_json}"
        )
    return 0


def _print_to_stdout(
    args: argparse.Namespace, failures: list[OSError], print_lines: Callable[[], None]
) -> None:
    """Run print_lines, and with --output-json log a failed write and go on.

    Without --output-json the results exist only on stdout, so a failed
    write ends the run.
    """
    try:
        print_lines()
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        if args.output_json is None:
            raise
        failures.append(err)
        logger.error(
            "stdout: cannot write the output (%s); the folds go on, and their "
            "results go to %s",
            err.strerror or err,
            args.output_json,
        )


def _report(
    args: argparse.Namespace,
    result: CrossValidationResult,
    saving: tuple[Sequence[Example], ReadOptions, str],
    stdout_failures: list[OSError],
) -> None:
    """Print the summary of a finished run and write its results JSON.

    ``saving`` is what :func:`save_results` takes after the result. The
    summary is not printed once a write to stdout has failed.
    """
    summary = result.summary()

    def print_summary() -> None:
        print(
            f"mean  {format_spread(summary['accuracy_mean'], summary['accuracy_std'])}"
            f"  F1 {format_spread(summary['macro_f1_mean'], summary['macro_f1_std'])}"
            f"  {summary['seconds_mean']:.1f} s per fold"
        )
        if result.shared_seconds >= 0.05:
            print(
                f"shared setup before the folds: {result.shared_seconds:.1f} s "
                f"({summary['shared_seconds_per_fold']:.1f} s per fold run)"
            )

    if not stdout_failures:
        _print_to_stdout(args, stdout_failures, print_summary)
    if args.output_json is not None:
        save_results(args, result, *saving)
        logger.info("wrote %s", args.output_json)


def _stopped_after(
    args: argparse.Namespace,
    partial: CrossValidationResult | None,
    folds_done: int,
    folds: int,
    saving: tuple[Sequence[Example], ReadOptions, str],
) -> str:
    """Write the finished folds of a stopped run and return where they are.

    ``saving`` contains the examples, read options and data format that
    :func:`save_results` records.
    """
    where = ""
    if folds_done:
        where = ", whose results are above"
        if args.output_json is not None and partial is not None:
            try:
                save_results(args, partial, *saving)
            except CommandError as failure:
                logger.error("%s", failure)
            else:
                where += f' and in {args.output_json} ("complete": false)'
    return (
        f"stopped after {folds_done} of {folds} folds{where}; cross-validate "
        "cannot resume a run, so the next run starts from the first fold "
        "(--run-folds N runs only the first N)"
    )


def save_results(
    args: argparse.Namespace,
    result: CrossValidationResult,
    examples: Sequence[Example],
    read_options: ReadOptions,
    data_format: str,
) -> None:
    """Write the results of the folds run, with the settings, to --output-json.

    Raises:
        CommandError: If the file cannot be written (see write_output_json).
    """
    values = result.to_dict()
    values["settings"]["data"] = args.data
    values["settings"]["preset"] = args.preset
    provenance = collect_provenance(examples, read_options, data_format)
    values["settings"].update(provenance)
    write_output_json(
        args.output_json, json.dumps(values, indent=2, default=str) + "\n"
    )

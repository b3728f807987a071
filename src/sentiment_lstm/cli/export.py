"""``sentiment-lstm export``: write model.onnx into a model directory."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from sentiment_lstm.cli.common import CommandError, path_argument
from sentiment_lstm.extras import install_hint

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX",
        description="Write MODEL/model.onnx, which ONNX Runtime scores without "
        "PyTorch. Inputs token_ids (int64, batch x sequence) and lengths (int64, "
        "batch), output probabilities (batch x 2: negative, positive). The "
        "export scores random batches with PyTorch and ONNX Runtime and fails "
        "if they differ by more than 1e-5; a failed export leaves any earlier "
        "model.onnx as it was.",
    )
    parser.add_argument(
        "--model", required=True, type=path_argument, help="model directory from train"
    )
    parser.set_defaults(handler=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Export the model and print the parity check's difference per shape.

    With -q a successful export prints nothing.
    """
    from sentiment_lstm.artifact import ArtifactError

    from sentiment_lstm import interrupts

    try:
        # A signal during the imports of PyTorch and onnx waits for them to
        # end, so that it is not reported as a failed import.
        with interrupts.deferred():
            from sentiment_lstm.export import ExportError, ParityError, export_model
    except ImportError as err:
        raise CommandError(
            f"exporting needs PyTorch, onnx and onnxruntime ({err}); install them "
            f"with: {install_hint('train')}"
        ) from err

    try:
        with _model_folder_lock(args.model):
            result = export_model(args.model)
    except ParityError as err:
        _print_parity(err.results, err.tolerance)
        raise CommandError(
            f"{err}, so no new model.onnx was written to {args.model}; the model "
            "still scores with --backend torch"
        ) from err
    except (ArtifactError, ExportError) as err:
        raise CommandError(str(err)) from err

    # -q leaves a successful export silent; a failed check prints its table.
    if not args.quiet:
        try:
            _print_parity(result.parity, result.tolerance)
            print(f"wrote {result.path} (ONNX opset {result.opset})")
            if sys.stdout is not None:
                sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            raise CommandError(
                f"wrote {result.path} (ONNX opset {result.opset}), but stdout "
                f"cannot take the report: {err.strerror or err}"
            ) from err
    return 0


def _model_folder_lock(folder: Path) -> contextlib.AbstractContextManager:
    """Return the lock that keeps a train run from saving into ``folder`` meanwhile.

    A folder that cannot be opened gets no lock; export_model then reports
    what is wrong with it.
    """
    from sentiment_lstm.cli.train_output import output_dir_lock

    try:
        os.close(os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
    except OSError:
        return contextlib.nullcontext()
    return output_dir_lock(
        folder,
        busy_message=f"{folder} is in use by another sentiment-lstm process, "
        "such as a train run that may save a new model there or another "
        "export; wait for it to finish, then export",
    )


def _print_parity(results, tolerance: float) -> None:
    for result in results:
        verdict = "ok" if result.max_abs_difference <= tolerance else "FAILED"
        print(
            f"parity {result.case.name:<22} max abs difference "
            f"{result.max_abs_difference:.3g} (tolerance {tolerance:g}) {verdict}"
        )

"""The LSTM configurations and the classical baselines under one 10-fold protocol.

Protocol: the rt-polarity neg lines followed by its pos lines form one list,
``StratifiedKFold(n_splits=10, shuffle=True, random_state=0)`` splits it, and
every configuration is trained on the training part of a fold and scored on
its test part. The LSTM configurations run exactly as ``sentiment-lstm
cross-validate`` with the flags shown in the table: a stratified 10% of each
training part picks the best epoch, and the test fold is scored once. The
baselines come from ``benchmarks/baselines.py``.

Run from the repository root::

    python benchmarks/crossval.py --output benchmarks/crossval.md
    python benchmarks/crossval.py --configs scratch-best nbsvm-svm --folds 2

Writes a markdown table (mean ± sample std of accuracy and macro F1 across
folds, seconds per fold, the command, the machine and its load) and, with
``--json``, every fold's numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "src"))

import baselines  # noqa: E402

from sentiment_lstm.cli import build_parser  # noqa: E402
from sentiment_lstm.cli.cross_validate import format_spread  # noqa: E402
from sentiment_lstm.cli.train import resolve_options  # noqa: E402
from sentiment_lstm.crossval import (  # noqa: E402
    CrossValidationConfig,
    cross_validate,
)
from sentiment_lstm.data import read_examples  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "rt-polarity"

# LSTM configurations: name to the flags of `sentiment-lstm cross-validate`.
LSTM_CONFIGS: dict[str, list[str]] = {
    "lstm-uni": [],
    "lstm-bi": ["--architecture", "bidirectional"],
    "scratch-best": ["--preset", "scratch-best"],
    "minilm": ["--preset", "minilm"],
    "minilm-contextual": ["--preset", "minilm-contextual"],
}
BASELINE_CONFIGS = ("tfidf-lr", "nbsvm-svm")
ALL_CONFIGS = (*BASELINE_CONFIGS, *LSTM_CONFIGS)


def run_lstm(
    name: str,
    data: Path,
    texts: list[str],
    labels: np.ndarray,
    folds: int,
    extra_flags: Sequence[str],
    threads: int | None = None,
) -> dict:
    """Cross-validate one LSTM configuration as the command line would."""
    flags = [*LSTM_CONFIGS[name], *extra_flags]
    if threads:
        flags += ["--threads", str(threads)]
    args = build_parser().parse_args(
        ["cross-validate", "--data", str(data), "--run-folds", str(folds), *flags]
    )
    options = resolve_options(args)
    result = cross_validate(
        texts,
        labels,
        cv_config=CrossValidationConfig(folds=10, seed=0, run_folds=folds),
        encoder_config=options.encoder_config,
        embedding_config=options.embedding_config,
        model_options=options.model_options,
        training_config=options.training_config,
    )
    values = result.to_dict()
    # The command of the whole protocol. "folds_run" gives the folds that ran.
    values["command"] = " ".join(
        ["sentiment-lstm cross-validate --data rt-polarity --folds 10", *flags]
    )
    return values


def run_baseline(name: str, texts: list[str], labels: np.ndarray, folds: int) -> dict:
    """Cross-validate one classical baseline on the protocol folds."""
    protocol = baselines.protocol_folds(labels)[:folds]
    results = baselines.cross_validate(
        baselines.BASELINES[name], texts, labels, protocol
    )
    summary = baselines.summarize(results)
    summary["shared_seconds_per_fold"] = 0.0
    return {
        "folds": [
            {
                "fold": i,
                "accuracy": r.accuracy,
                "macro_f1": r.macro_f1,
                "seconds": r.seconds,
            }
            for i, r in enumerate(results, start=1)
        ],
        "summary": summary,
        "shared_seconds": 0.0,
        "command": f"python benchmarks/baselines.py --baselines {name}",
    }


def machine_description() -> dict:
    """Return the CPU, core count, thread settings and versions."""
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def load_average() -> str:
    """Return the 1-minute load average, formatted."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def format_table(report: dict) -> str:
    """Render the results as the markdown section pasted into BENCHMARKS.md."""
    machine = report["machine"]
    count = machine["torch_threads"]
    threads = f"{count} thread" if count == 1 else f"{count} threads"
    lines = [
        f"10-fold cross-validation on rt-polarity ({report['folds_run']} of 10 "
        f"folds run), {report['date']}.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch "
        f"{machine['torch']} with {threads}, Python "
        f"{machine['python']}. The load column gives the 1-minute load average "
        "when a configuration started and ended; where it exceeds the 2 cores, "
        "other jobs shared them and the seconds are upper bounds.",
        "",
        "| configuration | accuracy % | macro F1 % | s per fold | CPU s per fold "
        "| shared s per fold | load | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, values in report["results"].items():
        summary = values["summary"]
        cpu = summary.get("cpu_seconds_mean")
        cpu = "n/a" if cpu is None else f"{cpu:.0f}"
        lines.append(
            f"| {name} "
            f"| {format_spread(summary['accuracy_mean'], summary['accuracy_std'])} "
            f"| {format_spread(summary['macro_f1_mean'], summary['macro_f1_std'])} "
            f"| {summary['seconds_mean']:.0f} "
            f"| {cpu} "
            f"| {summary['shared_seconds_per_fold']:.0f} "
            f"| {values['load_start']} → {values['load_end']} "
            f"| `{values['command']}` |"
        )
    lines += [
        "",
        "Accuracy and F1: mean ± sample standard deviation across folds. "
        "Seconds per fold: wall time of one fold (encoding, training with "
        "validation-based early stopping, scoring). CPU seconds per fold: the "
        "process's CPU time during a fold, which with one thread is about the "
        "fold's wall time on a core of its own. Shared seconds per fold: "
        "work done once for all folds (such as computing the contextual MiniLM "
        "features) divided by the folds run; it is 0 when the cache already "
        "existed.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the LSTM configurations and the classical baselines "
        "under the rt-polarity 10-fold protocol and write a markdown table."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder containing rt-polarity.neg and rt-polarity.pos "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=ALL_CONFIGS,
        default=list(ALL_CONFIGS),
        help="configurations to run (default: all)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=10,
        help="run the first N of the 10 protocol folds (default: 10)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads; 1 is faster when other jobs share the cores "
        "(default: torch's choice)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("crossval.md"),
        help="markdown file to write (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write every fold as JSON")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="run nothing: combine the --json files of earlier runs, in the "
        "order given, into one table",
    )
    parser.add_argument(
        "--lstm-flags",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra cross-validate flags for every LSTM configuration, "
        "e.g. --lstm-flags --num-epochs 5",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.folds <= 10:
        parser.error(f"--folds must be between 1 and 10, got {args.folds}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen configurations and write the table."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("sentiment_lstm.crossval").setLevel(logging.INFO)
    args = parse_args(argv)
    if args.from_json:
        reports = [json.loads(path.read_text()) for path in args.from_json]
        for path, report in zip(args.from_json, reports):
            if not isinstance(report, dict) or "results" not in report:
                raise SystemExit(
                    f"{path} is not a --json file of this script (it has no "
                    '"results"); pass the files that crossval.py --json wrote'
                )
        combined = dict(reports[0], results={})
        for report in reports:
            combined["results"].update(report["results"])
        combined["folds_run"] = min(report["folds_run"] for report in reports)
        args.output.write_text(format_table(combined), encoding="utf-8")
        print(f"wrote {args.output}")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    # the package's reader must give the protocol's order: neg lines, then pos
    examples = read_examples(args.data).examples
    texts = [example.text for example in examples]
    labels = np.array([example.label for example in examples], dtype=np.int64)
    protocol_texts, protocol_labels = baselines.load_rt_polarity(args.data)
    if not np.array_equal(labels, protocol_labels) or texts != [
        text.strip() for text in protocol_texts
    ]:
        raise SystemExit("the package reads rt-polarity in another order")

    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "folds_run": args.folds,
        "machine": machine_description(),
        "results": {},
    }
    for name in args.configs:
        started = time.perf_counter()
        load_start = load_average()
        if name in BASELINE_CONFIGS:
            values = run_baseline(name, protocol_texts, protocol_labels, args.folds)
        else:
            values = run_lstm(
                name,
                args.data,
                texts,
                labels,
                args.folds,
                args.lstm_flags,
                args.threads,
            )
        summary = values["summary"]
        print(
            f"{name}: "
            f"{format_spread(summary['accuracy_mean'], summary['accuracy_std'])} "
            f"({summary['seconds_mean']:.0f} s per fold, "
            f"{time.perf_counter() - started:.0f} s in all)",
            flush=True,
        )
        values["load_start"] = load_start
        values["load_end"] = load_average()
        report["results"][name] = values
        args.output.write_text(format_table(report), encoding="utf-8")
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``sentiment-lstm train``: train a model on labelled reviews and save it."""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentiment_lstm import interrupts
from sentiment_lstm.cli.common import (
    CommandError,
    add_data_options,
    add_threads_option,
    finite_float,
    fraction,
    keep_probability,
    learning_rate,
    logs_above_progress_bars,
    missing_training_packages,
    non_negative_int,
    path_argument,
    positive_float,
    positive_int,
    probability,
    read_options_from_args,
    seed_value,
)
from sentiment_lstm.cli.train_output import (
    check_no_saved_model,
    check_resume_checkpoint,
    interruption_message,
    output_dir_lock,
    prepare_output_dir,
    remove_empty_folders,
)
from sentiment_lstm.presets import PRESETS, describe_presets

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
_ARCHITECTURE_SPELLINGS = [
    name for name in ARCHITECTURE_ALIASES if name not in ARCHITECTURE_ALIASES.values()
]

# Values of the model and training flags when neither the command line nor a
# preset sets them. The flags themselves default to None, so that a preset can
# tell which ones the user gave.
DEFAULTS: dict[str, Any] = {
    "max_length": 400,
    "min_frequency": 2,
    "max_vocab_size": None,
    "embeddings": "random",
    "pretrained_vectors": None,
    "freeze_embeddings": False,
    "minilm_layers": (4, 5, 6),
    "nb_init_scale": 0.0,
    "architecture": "unidirectional",
    "lstm_units": 100,
    "num_layers": 1,
    "embedding_size": 100,
    "dropout_keep_prob": 0.5,
    "embedding_dropout": 0.25,
    # None: DEFAULT_POOLING picks by architecture
    "pooling": None,
    "num_epochs": 10,
    "batch_size": 32,
    "learning_rate": 0.0005,
    "optimizer": "adamw",
    "lr_schedule": "cosine",
    "warmup_fraction": 0.05,
    "patience": 3,
    "max_grad_norm": 5.0,
    "weight_decay": 0.01,
    "class_weights": "none",
    "ensemble_size": 1,
}


# The review vector when --pooling is not given, chosen per architecture by
# cross-validation on rt-polarity (see BENCHMARKS.md).
DEFAULT_POOLING = {"unidirectional": "last", "bidirectional": "max"}


def architecture(text: str) -> str:
    """Map an architecture name or one of its spellings to its canonical name."""
    try:
        return ARCHITECTURE_ALIASES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown architecture {text!r}; use unidirectional or bidirectional "
            f"(also accepted: {', '.join(_ARCHITECTURE_SPELLINGS)})"
        ) from None


def layer_list(text: str) -> tuple[int, ...]:
    """Parse comma-separated MiniLM layer numbers from 0 to 6 for argparse."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer numbers such as 4,5,6, got {text!r}"
        ) from err
    if any(not 0 <= layer <= 6 for layer in layers):
        raise argparse.ArgumentTypeError(
            f"MiniLM layers run from 0 (embedding output) to 6, got {text!r}"
        )
    if len(set(layers)) < len(layers):
        # A repeated layer would weigh more in the average, unannounced.
        raise argparse.ArgumentTypeError(
            f"each MiniLM layer may be named once, got {text!r}; give each "
            "layer once, such as 4,5,6"
        )
    return layers


def folder_path(text: str) -> Path:
    """Parse a folder path for argparse, rejecting the empty string.

    ``Path("")`` would otherwise mean the current folder.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "expected a folder path, got an empty string; write . for the "
            "current folder"
        )
    return Path(text)


# Upper bounds of two size flags, far above useful values. --max-length must
# fit the machine integers of the tokenizers library (2**64 overflows them),
# and a mistyped --num-layers such as 100000 fails here at once instead of
# after the data is read. The memory of the whole network is estimated once
# the vocabulary is built.
MAX_LENGTH_LIMIT = 1_000_000
NUM_LAYERS_LIMIT = 100


def max_length_value(text: str) -> int:
    """Parse --max-length for argparse: 1 to MAX_LENGTH_LIMIT tokens."""
    return _at_most(positive_int(text), MAX_LENGTH_LIMIT, "tokens")


def num_layers_value(text: str) -> int:
    """Parse --num-layers for argparse: 1 to NUM_LAYERS_LIMIT layers."""
    return _at_most(positive_int(text), NUM_LAYERS_LIMIT, "layers")


def _at_most(value: int, limit: int, unit: str) -> int:
    if value > limit:
        raise argparse.ArgumentTypeError(
            f"expected at most {limit:,} {unit}, got {value:,}"
        )
    return value


def vocabulary_size(text: str) -> int:
    """Parse a vocabulary size for argparse: <pad>, <unk> and at least one word."""
    value = positive_int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(
            f"expected at least 3 (<pad>, <unk> and one word), got {value}"
        )
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number of at least 0 for argparse."""
    value = finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value:g}")
    return value


def _default(name: str) -> str:
    value = DEFAULTS[name]
    if isinstance(value, tuple):
        value = ",".join(str(item) for item in value)
    return f"(default: {'none' if value is None else value})"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add the preset, text, embedding, model and training flags.

    ``train`` and ``cross-validate`` share them. Every flag defaults to None;
    :func:`resolve_options` fills in the preset's value or the default.
    """
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named set of the flags below, picked on validation accuracy "
        "and measured by cross-validation on rt-polarity (10 folds, 5 for "
        f"minilm); flags given explicitly win. {describe_presets()}",
    )

    text = parser.add_argument_group("text")
    text.add_argument(
        "--max-length",
        type=max_length_value,
        help=f"tokens kept per review, at most {MAX_LENGTH_LIMIT:,}; longer reviews "
        "keep their first MAX_LENGTH tokens, in training and prediction alike "
        + _default("max_length"),
    )
    text.add_argument(
        "--min-frequency",
        type=positive_int,
        help="training-split occurrences a word needs to enter the vocabulary "
        + _default("min_frequency"),
    )
    text.add_argument(
        "--max-vocab-size",
        type=vocabulary_size,
        help="vocabulary entries to keep, counting <pad> and <unk>, so the "
        "MAX_VOCAB_SIZE - 2 most frequent words stay (default: no limit)",
    )

    embeddings = parser.add_argument_group("embeddings")
    embeddings.add_argument(
        "--embeddings",
        choices=("random", "minilm", "minilm-contextual"),
        help="input vectors: random (word tokens, small uniform start, or "
        "--pretrained-vectors), minilm (MiniLM's WordPiece tokens and token "
        "embeddings, 384 values), minilm-contextual (frozen MiniLM outputs, "
        f"cross-validate only) {_default('embeddings')}",
    )
    embeddings.add_argument(
        "--pretrained-vectors",
        type=path_argument,
        metavar="FILE",
        help="GloVe or word2vec text file (optionally gzipped) whose vectors start "
        "the rows of the vocabulary words it contains; the file's dimension "
        "replaces --embedding-size (default: none)",
    )
    embeddings.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        help="keep the embedding table fixed instead of fine-tuning it "
        "(default: fine-tune)",
    )
    embeddings.add_argument(
        "--nb-init-scale",
        type=non_negative_float,
        metavar="SCALE",
        help="with random word vectors, start the first dimension of each at "
        "SCALE times the word's naive Bayes log-count ratio in the training "
        "split (above 0 for words of positive reviews); 0 leaves it random "
        + _default("nb_init_scale"),
    )
    embeddings.add_argument(
        "--minilm-layers",
        type=layer_list,
        metavar="LAYERS",
        help="with --embeddings minilm-contextual, the MiniLM hidden states to "
        "average, 0 (embedding output) to 6 (last layer) " + _default("minilm_layers"),
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--architecture",
        type=architecture,
        help=f"unidirectional or bidirectional LSTM {_default('architecture')}",
    )
    model.add_argument(
        "--lstm-units",
        "--lstm_units",
        type=positive_int,
        help=f"LSTM units per direction {_default('lstm_units')}",
    )
    model.add_argument(
        "--num-layers",
        "--num_layers",
        type=num_layers_value,
        help=f"stacked LSTM layers, at most {NUM_LAYERS_LIMIT} "
        + _default("num_layers"),
    )
    model.add_argument(
        "--embedding-size",
        "--embedding_size",
        type=positive_int,
        help=f"word vector size {_default('embedding_size')}",
    )
    model.add_argument(
        "--dropout-keep-prob",
        "--dropout_keep_prob",
        type=keep_probability,
        help="probability of keeping an activation on the LSTM's input and "
        f"output; 1 disables dropout {_default('dropout_keep_prob')}",
    )
    model.add_argument(
        "--embedding-dropout",
        type=fraction,
        help="probability of dropping a whole word vector "
        + _default("embedding_dropout"),
    )
    model.add_argument(
        "--pooling",
        choices=("last", "mean", "max"),
        help="review vector: final LSTM state, or mean or max over time "
        "(default: last for unidirectional, max for bidirectional)",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--num-epochs",
        "--num_epochs",
        "--num-epoch",
        "--num_epoch",
        dest="num_epochs",
        type=positive_int,
        help=f"maximum passes over the training split {_default('num_epochs')}",
    )
    training.add_argument(
        "--batch-size",
        "--batch_size",
        type=positive_int,
        help=f"reviews per optimisation step {_default('batch_size')}",
    )
    training.add_argument(
        "--learning-rate",
        "--learning_rate",
        type=learning_rate,
        help=f"peak learning rate {_default('learning_rate')}",
    )
    training.add_argument(
        "--optimizer",
        choices=("adam", "adamw"),
        help="Adam with an L2 penalty, or AdamW with decoupled weight decay "
        + _default("optimizer"),
    )
    training.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine", "plateau"),
        help="constant; cosine: linear warm-up over --warmup-fraction of the "
        "steps, then cosine decay to 0 at the last epoch; plateau: halve the "
        f"rate after an epoch without a better val_acc {_default('lr_schedule')}",
    )
    training.add_argument(
        "--warmup-fraction",
        type=fraction,
        help="share of all steps that the cosine schedule warms up over "
        + _default("warmup_fraction"),
    )
    training.add_argument(
        "--patience",
        type=non_negative_int,
        help="stop after this many epochs without a better validation accuracy, "
        "counted after the warm-up of --lr-schedule cosine; "
        f"0 trains every epoch {_default('patience')}",
    )
    training.add_argument(
        "--max-grad-norm",
        type=positive_float,
        help=f"clip gradients to this L2 norm {_default('max_grad_norm')}",
    )
    training.add_argument(
        "--weight-decay",
        type=non_negative_float,
        help="L2 penalty (adam) or decoupled weight decay (adamw) "
        + _default("weight_decay"),
    )
    training.add_argument(
        "--class-weights",
        choices=("none", "balanced"),
        help="balanced weights each class's loss by the inverse of its share "
        f"of the training split {_default('class_weights')}",
    )
    training.add_argument(
        "--ensemble-size",
        type=positive_int,
        help="train this many networks with seeds SEED, SEED+1, ..., each "
        "keeping its best validation epoch, and save one network that averages "
        "their logits; training takes that many times longer "
        + _default("ensemble_size"),
    )
    training.add_argument(
        "--seed",
        type=seed_value,
        default=0,
        help="seed of the split, initialisation, batch order and dropout "
        "(default: 0)",
    )


@dataclass(frozen=True)
class RunOptions:
    """Configurations resolved from the flags, a preset and the defaults."""

    encoder_config: Any
    embedding_config: Any
    model_options: dict[str, Any]
    training_config: Any
    values: dict[str, Any]


# A learning rate above this gets a warning, because Adam's usual rates are
# far lower.
MAX_USUAL_LEARNING_RATE = 1.0


def _warn_unused_flags(args: argparse.Namespace, values: dict[str, Any]) -> None:
    """Log a warning for each flag given that the other settings leave unused.

    Also warn about a learning rate far above Adam's usual range.
    """
    if (
        getattr(args, "warmup_fraction", None) is not None
        and values["lr_schedule"] != "cosine"
    ):
        logger.warning(
            "--warmup-fraction %g has no effect with --lr-schedule %s; only the "
            "cosine schedule warms up",
            values["warmup_fraction"],
            values["lr_schedule"],
        )
    if values["embeddings"] != "random":
        # MiniLM's inputs come with their own vocabulary and vector size.
        for name, flag, reason in (
            ("min_frequency", "--min-frequency", "vocabulary is"),
            ("max_vocab_size", "--max-vocab-size", "vocabulary is"),
            ("embedding_size", "--embedding-size", "vectors are those of"),
        ):
            if getattr(args, name, None) is not None:
                logger.warning(
                    "%s has no effect with --embeddings %s, whose %s MiniLM's "
                    "30,522 WordPiece tokens (384 dimensions)",
                    flag,
                    values["embeddings"],
                    reason,
                )
    if values["learning_rate"] > MAX_USUAL_LEARNING_RATE:
        logger.warning(
            "--learning-rate %g is above %g: Adam moves each weight by up to "
            "about the learning rate at every step, so the weights soon grow "
            "far beyond their usual size and training usually diverges; rates "
            "of 1e-4 to 1e-2 are usual",
            values["learning_rate"],
            MAX_USUAL_LEARNING_RATE,
        )
    if (
        getattr(args, "freeze_embeddings", None)
        and values["embeddings"] == "random"
        and values["pretrained_vectors"] is None
    ):
        logger.warning(
            "--freeze-embeddings without --pretrained-vectors keeps the "
            "random starting vectors for good, so the words never get vectors "
            "of their own; add --pretrained-vectors FILE, or drop "
            "--freeze-embeddings"
        )
    if values["embeddings"] == "minilm-contextual":
        return
    for name, flag, effect in (
        ("minilm_layers", "--minilm-layers", "averages MiniLM's layers"),
        ("feature_cache", "--feature-cache", "caches MiniLM's outputs"),
    ):
        if getattr(args, name, None) is not None:
            logger.warning(
                "%s has no effect with --embeddings %s; only minilm-contextual %s",
                flag,
                values["embeddings"],
                effect,
            )


def resolve_options(
    args: argparse.Namespace, *, required_accuracy: float = 0.0
) -> RunOptions:
    """Combine explicit flags, the chosen preset and the defaults.

    Args:
        args: Parsed arguments of ``train`` or ``cross-validate``.
        required_accuracy: Validation accuracy needed before a model is saved.

    Returns:
        The text encoder, embedding, model and training settings.

    Raises:
        CommandError: If a combination of flags is invalid.
    """
    from sentiment_lstm.embeddings import (
        EmbeddingConfig,
        EmbeddingError,
        minilm_model_dir,
    )
    from sentiment_lstm.text import TextEncoderConfig
    from sentiment_lstm.training import TrainingConfig

    preset = PRESETS[args.preset].values if args.preset else {}
    values = {}
    for name, default in DEFAULTS.items():
        given = getattr(args, name, None)
        values[name] = given if given is not None else preset.get(name, default)
    if values["pooling"] is None:
        values["pooling"] = DEFAULT_POOLING[values["architecture"]]
    if args.preset:
        logger.info("preset %s: %s", args.preset, PRESETS[args.preset].summary)
    _warn_unused_flags(args, values)

    try:
        embedding_config = EmbeddingConfig(
            source=values["embeddings"],
            vectors_path=(
                None
                if values["pretrained_vectors"] is None
                else str(values["pretrained_vectors"])
            ),
            minilm_layers=tuple(values["minilm_layers"]),
            cache_dir=_feature_cache(args, values["embeddings"]),
            nb_init_scale=values["nb_init_scale"],
        )
    except EmbeddingError as err:
        message = str(err)
        from_preset = [
            name.replace("_", "-")
            for name in preset
            if getattr(args, name, None) is None
            and f"--{name.replace('_', '-')}" in message
        ]
        if from_preset:
            message += (
                f" ({', '.join('--' + name for name in from_preset)} set by "
                f"--preset {args.preset})"
            )
        raise CommandError(message, usage=True) from err
    if embedding_config.source != "random":
        # Fail before the data is read and split, not when the model is built.
        try:
            minilm_model_dir()
        except EmbeddingError as err:
            raise CommandError(
                f"--embeddings {embedding_config.source}: {err}"
            ) from err
    encoder_config = TextEncoderConfig(
        max_length=values["max_length"],
        min_frequency=values["min_frequency"],
        max_vocab_size=values["max_vocab_size"],
    )
    model_options = {
        "embedding_dim": values["embedding_size"],
        "hidden_dim": values["lstm_units"],
        "num_layers": values["num_layers"],
        "bidirectional": values["architecture"] == "bidirectional",
        # rounded, so that a keep probability of 0.7 records 0.3, not
        # 0.30000000000000004
        "dropout": round(1.0 - values["dropout_keep_prob"], 12),
        "embedding_dropout": values["embedding_dropout"],
        "pooling": values["pooling"],
    }
    decay_factor = values["learning_rate"] * values["weight_decay"]
    if values["optimizer"] == "adamw" and decay_factor >= 1:
        raise CommandError(
            f"--learning-rate {values['learning_rate']:g} times --weight-decay "
            f"{values['weight_decay']:g} is {decay_factor:g}, but must be below 1 "
            "with --optimizer adamw, which multiplies every weight by 1 minus "
            "that product at each step; choose a --learning-rate below "
            f"{1 / values['weight_decay']:g} or a --weight-decay below "
            f"{1 / values['learning_rate']:g}",
            usage=True,
        )
    try:
        training_config = TrainingConfig(
            num_epochs=values["num_epochs"],
            batch_size=values["batch_size"],
            learning_rate=values["learning_rate"],
            required_accuracy=required_accuracy,
            patience=values["patience"] or None,
            seed=args.seed,
            max_grad_norm=values["max_grad_norm"],
            weight_decay=values["weight_decay"],
            optimizer=values["optimizer"],
            lr_schedule=values["lr_schedule"],
            warmup_fraction=values["warmup_fraction"],
            class_weights=values["class_weights"],
            freeze_embeddings=values["freeze_embeddings"],
            ensemble_size=values["ensemble_size"],
        )
    except ValueError as err:
        raise CommandError(str(err), usage=True) from err
    return RunOptions(
        encoder_config, embedding_config, model_options, training_config, values
    )


def _feature_cache(args: argparse.Namespace, embeddings: str) -> str | None:
    """Return the folder of the MiniLM feature cache, or None for no cache.

    Raises:
        CommandError: If the contextual features would be cached under a file.
    """
    from sentiment_lstm.data.datasets import cache_root

    if getattr(args, "no_feature_cache", False):
        return None
    given = getattr(args, "feature_cache", None)
    folder = Path(given) if given is not None else cache_root() / "features"
    if embeddings != "minilm-contextual":
        return str(folder)
    # Checked now, because the features take minutes to compute before the
    # cache is written.
    blocking = next((part for part in (folder, *folder.parents) if part.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise CommandError(
            f"--feature-cache {folder}: {blocking} is a file, not a folder; name "
            "a folder for the cache, or pass --no-feature-cache",
            usage=True,
        )
    return str(folder)


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
        type=folder_path,
        help="model directory to write (default: models/<data>-<preset>, or "
        "models/<data>-<architecture> without --preset)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the checkpoint.pt in --output-dir, "
        "or save the best epoch of a run that reached no "
        "--required-acc-checkpoint; pass the same data and flags as that run, "
        "except that --required-acc-checkpoint may be lower",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the model already in --output-dir once the new one is "
        "saved; without it, such a folder is an error",
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="hide the progress bar of each epoch's batches, which is shown on "
        "a terminal; the line after each epoch stays",
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
        default=None,
        help="share of --data held out for validation (default: 0.1)",
    )
    split.add_argument(
        "--test-fraction",
        type=fraction,
        default=None,
        help="share of --data held out for testing; 0 for none (default: 0.1)",
    )
    add_model_options(parser)
    add_threads_option(parser)
    parser.add_argument(
        "--required-acc-checkpoint",
        "--required_acc_checkpoint",
        type=probability,
        default=0.0,
        help="validation accuracy a model must reach before it is saved "
        "(default: 0, always save the best)",
    )
    parser.set_defaults(handler=run, command_parser=parser)


def default_output_dir(
    data: str, architecture_name: str, preset: str | None = None
) -> Path:
    """Name a model directory after the data, and the preset or architecture."""
    stem = Path(data.rstrip("/\\")).name or "model"
    stem = re.sub(r"\.(pos|neg|csv|tsv|tab|jsonl|ndjson|txt)$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "model"
    return Path("models") / f"{stem}-{preset or architecture_name}"


def import_training_modules() -> None:
    """Import PyTorch, scikit-learn and the training code, holding back Ctrl-C.

    ``train`` and ``cross-validate`` call this first, so that a Ctrl-C during
    these slow imports raises KeyboardInterrupt once they end instead of
    being lost (see :func:`sentiment_lstm.interrupts.deferred`).
    """
    with interrupts.deferred():
        import sklearn.model_selection  # noqa: F401

        # Creating a PyTorch optimizer imports torch._dynamo (about 1 s here).
        import torch._dynamo  # noqa: F401

        import sentiment_lstm.crossval  # noqa: F401
        import sentiment_lstm.pipeline  # noqa: F401


# Share of --data held out for validation, and for testing, by default.
DEFAULT_HELD_OUT_FRACTION = 0.1


def fill_held_out_fractions(args: argparse.Namespace) -> None:
    """Fill in the split fractions that were not given.

    A fraction given beside the separate file that replaces its split, such
    as --validation-fraction with --validation-data, is logged as a warning.
    """
    for part, data in (("validation", args.validation_data), ("test", args.test_data)):
        name = f"{part}_fraction"
        given = getattr(args, name)
        if given is None:
            setattr(args, name, DEFAULT_HELD_OUT_FRACTION)
        elif data is not None:
            logger.warning(
                "--%s-fraction %g has no effect with --%s-data, which replaces "
                "the %s split",
                part,
                given,
                part,
                part,
            )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Train and save; exit status 1 if no epoch reached the required accuracy."""
    try:
        return _run(args, parser)
    except KeyboardInterrupt as err:
        if str(err):
            raise
        # _run names what it saved once it has an output folder, so an
        # interruption without a message came before anything was written.
        raise KeyboardInterrupt(
            "interrupted before training started; nothing was written"
        ) from None


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        import_training_modules()
        from sentiment_lstm.pipeline import DataSpec, SaveRecord
    except ImportError as err:
        raise missing_training_packages("train", err) from err

    fill_held_out_fractions(args)

    if args.resume and args.overwrite:
        parser.error(
            "--resume continues the interrupted run and --overwrite starts a new "
            "one; pass only one of them"
        )
    if args.validation_data is None and args.validation_fraction == 0:
        parser.error(
            "--validation-fraction 0 leaves no reviews to pick the best epoch; "
            "give --validation-data or a fraction above 0"
        )
    # A fraction beside the file that replaces its split splits nothing off.
    validation_share = 0.0 if args.validation_data else args.validation_fraction
    test_share = 0.0 if args.test_data else args.test_fraction
    if validation_share + test_share >= 1:
        parser.error(
            f"--validation-fraction ({args.validation_fraction:g}) plus "
            f"--test-fraction ({args.test_fraction:g}) must stay below 1"
        )
    # Checked before resolve_options, which requires the MiniLM package, so
    # that installing the package is not the first fix the error names.
    preset = PRESETS[args.preset].values if args.preset else {}
    if (args.embeddings or preset.get("embeddings")) == "minilm-contextual":
        flag = (
            "--embeddings minilm-contextual"
            if args.embeddings
            else f"--preset {args.preset}, which uses MiniLM's contextual outputs,"
        )
        raise CommandError(
            f"{flag} cannot be saved for prediction, "
            "because the predictor does not run MiniLM; measure it with "
            "'sentiment-lstm cross-validate', or use --embeddings minilm",
            usage=True,
        )
    options = resolve_options(args, required_accuracy=args.required_acc_checkpoint)
    import torch

    torch.set_num_threads(args.threads)
    output_dir = Path(
        args.output_dir
        or default_output_dir(args.data, options.values["architecture"], args.preset)
    )
    spec = DataSpec(
        data=args.data,
        read_options=read_options_from_args(args),
        validation_data=args.validation_data,
        test_data=args.test_data,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
    )
    record = SaveRecord()
    created: list[Path] = []
    try:
        prepare_output_dir(output_dir, created)
        with output_dir_lock(output_dir):
            if args.resume:
                check_resume_checkpoint(
                    output_dir, options.training_config.ensemble_size
                )
            elif not args.overwrite:
                check_no_saved_model(output_dir)
            outcome = _train(args, spec, options, output_dir, record)
        if not outcome.saved:
            raise CommandError(_threshold_not_reached(args, outcome, output_dir))
    except KeyboardInterrupt:
        # main() prints the message and exits with status 130
        raise KeyboardInterrupt(
            interruption_message(output_dir, record, overwrite=args.overwrite)
        ) from None
    finally:
        # only folders that this run created, and only if they are empty
        remove_empty_folders(created)
    logger.info("model saved to %s", output_dir)
    return 0


def _threshold_not_reached(
    args: argparse.Namespace, outcome: Any, output_dir: Path
) -> str:
    """Return the error of a run that saved no model, with how to save one from its epochs."""
    from sentiment_lstm.artifact import CONFIG_FILE
    from sentiment_lstm.pipeline import CHECKPOINT_FILE

    best = outcome.result.best
    unsaved = "so no model was saved"
    if (output_dir / CONFIG_FILE).is_file():
        unsaved = f"so no new model was saved ({output_dir} keeps its earlier one)"
    if outcome.ensemble is not None:
        # An ensemble is saved only as a whole, so its members keep no
        # checkpoints for a later run.
        return (
            f"the merged ensemble's validation accuracy "
            f"{best.validation_accuracy:.3f} is below the required "
            f"{args.required_acc_checkpoint:g}, {unsaved}; lower "
            "--required-acc-checkpoint or train longer"
        )
    head = (
        f"no epoch reached the required validation accuracy "
        f"{args.required_acc_checkpoint:g} (best {best.validation_accuracy:.3f}"
    )
    checkpoint = output_dir / CHECKPOINT_FILE
    if not checkpoint.is_file():
        return f"{head}), {unsaved}; lower --required-acc-checkpoint or train longer"
    flags = "--resume in place of --overwrite" if args.overwrite else "--resume"
    return (
        f"{head} at epoch {outcome.result.best_epoch}), {unsaved}. "
        f"{checkpoint} keeps the trained epochs, so to save epoch "
        f"{outcome.result.best_epoch} without training again, repeat the "
        f"command with {flags} and --required-acc-checkpoint "
        f"{_floor(best.validation_accuracy)}"
    )


def _floor(accuracy: float) -> str:
    """Return ``accuracy`` rounded down to 3 decimals, as text."""
    text = f"{accuracy:.3f}"
    if float(text) > accuracy:
        text = f"{float(text) - 0.001:.3f}"
    return text


def _train(
    args: argparse.Namespace,
    spec: Any,
    options: RunOptions,
    output_dir: Path,
    record: Any,
) -> Any:
    """Read the data and train, turning expected failures into CommandError."""
    from sentiment_lstm.data import DataError
    from sentiment_lstm.pipeline import SaveError, load_splits, train_model
    from sentiment_lstm.training import DivergenceError

    try:
        splits = load_splits(spec, seed=args.seed)
        with logs_above_progress_bars():
            return train_model(
                splits,
                output_dir,
                encoder_config=options.encoder_config,
                model_options=options.model_options,
                training_config=options.training_config,
                embedding_config=options.embedding_config,
                resume=args.resume,
                record=record,
                show_progress=None if args.progress else False,
            )
    except DivergenceError as err:
        raise CommandError(divergence_message(err, options.values)) from err
    except (DataError, ValueError, SaveError) as err:
        raise CommandError(str(err)) from err
    except RuntimeError as err:
        # NOTE: this matches the text of PyTorch's CPU allocator error, which
        # a later release may change; other failures keep their traceback.
        if "DefaultCPUAllocator" not in str(err):
            raise
        raise CommandError(
            f"the model does not fit in memory ({err}); lower --lstm-units, "
            "--num-layers, --embedding-size or --max-vocab-size"
        ) from err


# Flags whose values can make the loss diverge, in the order they are named.
DIVERGENCE_FLAGS = {
    "learning_rate": "--learning-rate",
    "weight_decay": "--weight-decay",
    "nb_init_scale": "--nb-init-scale",
    "max_grad_norm": "--max-grad-norm",
}


def divergence_message(err: Any, values: dict[str, Any]) -> str:
    """Explain a diverged run by the settings that differ from the defaults.

    Args:
        err: The ``DivergenceError``, with the epoch and the loss.
        values: The resolved flag values of the run.
    """
    changed = [
        f"{flag} {values[name]:g} (default {DEFAULTS[name]:g})"
        for name, flag in DIVERGENCE_FLAGS.items()
        if values[name] != DEFAULTS[name]
    ]
    if changed:
        if len(changed) == 1:
            advice = f"the run used {changed[0]}; move it towards the default"
        else:
            advice = (
                f"the run used {', '.join(changed)}; move them towards the " "defaults"
            )
    else:
        advice = (
            "the run used the default settings; lower the learning rate with "
            f"--learning-rate (now {values['learning_rate']:g})"
        )
    clipping = f"gradients are already clipped to norm {values['max_grad_norm']:g}"
    return (
        f"training failed: {err.problem} in epoch {err.epoch}; "
        f"{advice}. The {clipping} (--max-grad-norm)"
    )

"""From a data path to a saved model: read, split, encode, train, save."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from sentiment_lstm import artifact, interrupts
from sentiment_lstm.data import (
    LABEL_NAMES,
    DataError,
    Example,
    ReadOptions,
    ReadResult,
    data_fingerprint,
    read_examples,
    resolve_data,
    split_examples,
)
from sentiment_lstm.data.columns import MissingColumnError
from sentiment_lstm.data.readers import detect_format
from sentiment_lstm.embeddings import EmbeddingConfig, EmbeddingError, InputFactory
from sentiment_lstm.files import file_sha256, write_text_atomic
from sentiment_lstm.model import (
    ModelConfig,
    SentimentLSTM,
    count_parameters,
    parameter_count,
)
from sentiment_lstm.provenance import (
    TRAINING_REVIEWS_KEY,
    examples_fingerprint,
    read_options_record,
    review_set_fingerprint,
    training_reviews_record,
)
from sentiment_lstm.text import TextEncoderConfig
from sentiment_lstm.training import (
    FLOAT_BYTES,
    EncodedSplit,
    EnsembleResult,
    EpochMetrics,
    ModelSizeError,
    TrainingConfig,
    TrainingResult,
    accuracy,
    available_memory,
    estimate_training_memory,
    load_checkpoint,
    saved_threshold,
    seed_everything,
    train,
    train_ensemble,
    warn_about_reviews_without_tokens,
)

logger = logging.getLogger(__name__)

HISTORY_FILE = "metrics.json"
# Written after every epoch so that ``train --resume`` can continue a run that
# was interrupted; removed when training ends.
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass(frozen=True)
class DataSpec:
    """Where the reviews come from and how they are split.

    Attributes:
        data: A path, or a dataset name such as ``rt-polarity``.
        read_options: Format, columns, label rules.
        validation_data: Optional separate validation file; when given, the
            main data is not split for validation.
        test_data: Optional separate test file; when given, the main data is
            not split for testing.
        validation_fraction: Share of the main data held out for validation.
        test_fraction: Share of the main data held out for testing.
    """

    data: str
    read_options: ReadOptions = ReadOptions()
    validation_data: str | None = None
    test_data: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass
class Splits:
    """The three splits and what reading them found.

    Attributes:
        data_format: The format ``spec.data`` was read as, given or detected.
    """

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    reads: list[ReadResult] = field(default_factory=list)
    spec: DataSpec | None = None
    data_format: str | None = None

    def files(self) -> list[Path]:
        return sorted({path for read in self.reads for path in read.files})


@dataclass
class TrainOutcome:
    """A finished run: the result and whether a model was saved."""

    result: TrainingResult
    saved: bool
    output_dir: Path
    ensemble: EnsembleResult | None = None


@dataclass
class SaveRecord:
    """Files that a training run has written to its output folder so far.

    Attributes:
        model_epoch: Epoch of the last model this run saved, if any.
        checkpoint_epoch: Epoch of the resumable checkpoint this run wrote
            last; None once training ends and the checkpoint is removed.
        finished: Whether training ended and its checkpoints are removed.
        ensemble_saved: Whether this run saved its merged ensemble.
    """

    model_epoch: int | None = None
    checkpoint_epoch: int | None = None
    finished: bool = False
    ensemble_saved: bool = False


class SaveError(OSError):
    """Error for a failed write to the output folder, naming what it still contains."""


# A held-out file that shares at least this share of its reviews with the
# training part gets a warning, because it is then mostly the training data
# again.
HELD_OUT_OVERLAP_WARNING_SHARE = 0.5


def load_splits(spec: DataSpec, seed: int) -> Splits:
    """Read the data and split it into train, validation and test.

    A part given as its own file (``validation_data``, ``test_data``) is not
    cut from the main data. Such a file gets a warning when it is the main
    data file, when most of its reviews also occur in the training part, or
    when it contains one class only.

    Args:
        spec: Data locations and split sizes.
        seed: Fixes the stratified split.

    Returns:
        The splits, with what each read skipped or left out.
    """
    path = resolve_data(spec.data)
    held_out_files = {"validation": spec.validation_data, "test": spec.test_data}
    held_out_paths = {
        part: resolve_data(source) for part, source in held_out_files.items() if source
    }
    main_options, *held_out_options = _read_options_by_file(
        [path, *held_out_paths.values()], spec.read_options
    )
    options_by_part = dict(zip(held_out_paths, held_out_options))
    spec = dataclasses.replace(spec, read_options=main_options)
    # the readers log what they read, skipped and left out
    main = read_examples(path, main_options)
    present = {example.label for example in main.examples}
    if len(present) < 2:
        raise DataError(
            f"{spec.data} has only {LABEL_NAMES[present.pop()]} reviews "
            f"({len(main.examples)}), and a classifier needs both positive and "
            "negative ones; check the label column, the --stars cut-offs, or "
            "whether bad rows were left out"
        )
    data_format = main_options.format or detect_format(path)
    reads = [main]
    validation_fraction = 0.0 if spec.validation_data else spec.validation_fraction
    test_fraction = 0.0 if spec.test_data else spec.test_fraction
    if validation_fraction == 0 and test_fraction == 0:
        # both held-out parts come from files, so nothing is split off
        train_part, validation, test = list(main.examples), [], []
    else:
        train_part, validation, test = split_examples(
            main.examples,
            seed=seed,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
        )
    split_off = {"validation": validation_fraction, "test": test_fraction}
    if any(fraction > 0 for fraction in split_off.values()):
        training_texts = {example.text for example in train_part}
        for part, examples in (("validation", validation), ("test", test)):
            if split_off[part] > 0:
                _check_split_overlap(part, spec.data, examples, training_texts)
    for part, held_out_path in held_out_paths.items():
        source = held_out_files[part]
        # the readers log what they read, skipped and left out
        try:
            extra = read_examples(held_out_path, options_by_part[part])
        except MissingColumnError as err:
            named = [
                flag
                for flag, value in (
                    ("--text-column", spec.read_options.text_column),
                    ("--label-column", spec.read_options.label_column),
                )
                if value is not None
            ]
            if not named:
                raise
            verb = "applies" if len(named) == 1 else "apply"
            raise DataError(
                f"{err} ({' and '.join(named)} {verb} to --data and to "
                f"--{part}-data alike, so the files need the same column names)"
            ) from err
        reads.append(extra)
        if part == "validation":
            validation = extra.examples
        else:
            test = extra.examples
        logger.info(
            "%s part: the %d reviews of --%s-data %s",
            part,
            len(extra.examples),
            part,
            source,
        )
        _check_held_out_file(part, source, extra, main, train_part)
    if spec.validation_data and spec.test_data:
        _check_test_file_against_validation(spec, validation, test)
    present = {example.label for example in train_part}
    if len(present) < 2:
        # Large held-out fractions can take every review of a small class.
        only = LABEL_NAMES[present.pop()] if present else "no"
        raise DataError(
            f"the training part of {spec.data} has only {only} reviews "
            f"({len(train_part)}), and a classifier needs both positive and "
            "negative ones; lower --validation-fraction or --test-fraction"
        )
    return Splits(train_part, validation, test, reads, spec, data_format)


# Formats whose files name their columns, so that the column and star
# options apply to them.
TABULAR_FORMATS = ("csv", "tsv", "jsonl")


def _read_options_by_file(paths: list[Path], options: ReadOptions) -> list[ReadOptions]:
    """Return the read options of each of --data and the held-out files.

    The column and star options apply to the CSV, TSV and JSONL files among
    them, so that a pos/neg file or a folder can hold out reviews for a CSV
    file, or the reverse. When none of the files has such a format, every
    file keeps the options, so that reading rejects them with the reason.
    """
    formats = [options.format or detect_format(path) for path in paths]
    if not any(data_format in TABULAR_FORMATS for data_format in formats):
        return [options] * len(paths)
    without_columns = dataclasses.replace(
        options, text_column=None, label_column=None, stars=False
    )
    return [
        options if data_format in TABULAR_FORMATS else without_columns
        for data_format in formats
    ]


def _check_held_out_file(
    part: str,
    source: str,
    held_out: ReadResult,
    main: ReadResult,
    train_part: list[Example],
) -> None:
    """Warn when a held-out file cannot measure what its accuracy claims."""
    flag = f"--{part}-data"
    same_files = {file.resolve() for file in held_out.files} == {
        file.resolve() for file in main.files
    }
    if same_files or data_fingerprint(held_out.files) == data_fingerprint(main.files):
        logger.warning(
            "%s %s is the same data as --data, so the model trains on the "
            "reviews that measure it and the %s accuracy means little; give "
            "reviews the model does not train on",
            flag,
            source,
            part,
        )
    else:
        training_texts = {example.text for example in train_part}
        shared = sum(example.text in training_texts for example in held_out.examples)
        share = shared / max(1, len(held_out.examples))
        if shared and share >= HELD_OUT_OVERLAP_WARNING_SHARE:
            logger.warning(
                "%d of the %d reviews of %s %s also occur in the training part, "
                "so the %s accuracy is mostly measured on training reviews; "
                "give reviews the model does not train on",
                shared,
                len(held_out.examples),
                flag,
                source,
                part,
            )
    labels = {example.label for example in held_out.examples}
    if len(labels) == 1:
        logger.warning(
            "%s %s has only %s reviews, so the %s accuracy measures one class "
            "and says little about the model; add reviews of both classes",
            flag,
            source,
            LABEL_NAMES[labels.pop()],
            part,
        )


def _check_split_overlap(
    part: str, data: str, held_out: list[Example], training_texts: set[str]
) -> None:
    """Warn when a part split off the data mostly repeats training reviews."""
    shared = sum(example.text in training_texts for example in held_out)
    if shared and shared / len(held_out) >= HELD_OUT_OVERLAP_WARNING_SHARE:
        logger.warning(
            "%d of the %d reviews of the %s part also occur in the training "
            "part, because %s repeats reviews, so the %s accuracy is mostly "
            "measured on training reviews; remove the repeats from the data",
            shared,
            len(held_out),
            part,
            data,
            part,
        )


def _check_test_file_against_validation(
    spec: DataSpec, validation: list[Example], test: list[Example]
) -> None:
    """Warn when the test file mostly repeats the validation file.

    The validation reviews pick the best epoch, so test accuracy on them
    overstates how the model does on new reviews.
    """
    validation_texts = {example.text for example in validation}
    shared = sum(example.text in validation_texts for example in test)
    if not shared or shared / len(test) < HELD_OUT_OVERLAP_WARNING_SHARE:
        return
    logger.warning(
        "%d of the %d reviews of --test-data %s also occur in --validation-data "
        "%s, which picks the best epoch, so the test accuracy is not measured "
        "on unseen reviews; give test reviews of their own",
        shared,
        len(test),
        spec.test_data,
        spec.validation_data,
    )


def encode(
    encoder: Any,
    examples: list[Example],
    token_ids: list[list[int]] | None = None,
) -> EncodedSplit:
    """Turn examples into token ids and a label array.

    ``token_ids`` are the examples' ids when the caller has them already.
    """
    if token_ids is None:
        token_ids = encoder.encode_batch([example.text for example in examples])
    labels = np.array([example.label for example in examples], dtype=np.int64)
    return EncodedSplit(token_ids, labels)


def train_model(
    splits: Splits,
    output_dir: Path,
    *,
    encoder_config: TextEncoderConfig = TextEncoderConfig(),
    model_options: dict[str, Any] | None = None,
    training_config: TrainingConfig = TrainingConfig(),
    show_progress: bool | None = None,
    embedding_config: EmbeddingConfig = EmbeddingConfig(),
    resume: bool = False,
    record: SaveRecord | None = None,
) -> TrainOutcome:
    """Build the vocabulary, train, and save the best model to ``output_dir``.

    The vocabulary comes from the training split alone, so held-out reviews
    cannot leak into it. The model is saved whenever validation accuracy
    improves and has reached ``training_config.required_accuracy``; the
    per-epoch history is written to ``metrics.json`` after every epoch, and a
    resumable checkpoint to ``checkpoint.pt``. Once training ends, the
    checkpoint is removed if a model was saved. Otherwise it stays, so that
    a resumed run with a lower required accuracy can save the best epoch.

    Args:
        splits: Train, validation and test examples.
        output_dir: The model directory to write.
        encoder_config: Tokenizer and vocabulary settings.
        model_options: ``ModelConfig`` fields other than ``vocab_size``.
        training_config: Optimisation settings.
        show_progress: Progress bar; by default only on a terminal.
        embedding_config: Where the input vectors come from. Contextual
            MiniLM features are rejected, because a saved model could not
            compute them for new text.
        resume: Continue the interrupted run whose checkpoint is in
            ``output_dir``.
        record: Updated as the run saves models and checkpoints, so that a
            caller can tell what an interrupted run left behind.

    Returns:
        The training result and whether a model reached the required accuracy.

    Raises:
        EmbeddingError: If the embedding source cannot be saved with a model,
            or a vectors file is invalid.
        CheckpointError: If ``resume`` is set and the checkpoint is missing or
            comes from other settings or data.
        ModelSizeError: If training the network would take more memory than
            is available.
        SaveError: If writing to ``output_dir`` fails, for example on a full
            disk.
    """
    if embedding_config.source == "minilm-contextual":
        raise EmbeddingError(
            "a model on contextual MiniLM features cannot be saved for "
            "prediction, because the predictor does not run MiniLM; measure it "
            "with 'sentiment-lstm cross-validate' or pick another --embeddings"
        )
    output_dir = Path(output_dir)
    seed_everything(training_config.seed)
    factory = InputFactory(embedding_config, encoder_config)
    train_texts = [example.text for example in splits.train]
    prepared = factory.build(train_texts, [example.label for example in splits.train])
    encoder = prepared.encoder
    if embedding_config.source == "random" and encoder.vocab_size <= 2:
        raise DataError(
            f"no word of the training part occurs --min-frequency "
            f"{encoder_config.min_frequency} times, so the vocabulary would be "
            "only <pad> and <unk>; lower --min-frequency"
        )
    train_split = encode(encoder, splits.train, prepared.encode_training(train_texts))
    validation_split = encode(encoder, splits.validation)
    test_split = encode(encoder, splits.test) if splits.test else None

    _check_model_fits(prepared, model_options or {}, train_split, training_config)
    model = factory.make_model(prepared, model_options or {})
    model_config = model.config
    _log_summary(splits, train_split, encoder, model, training_config)

    base_metadata = _base_metadata(splits, encoder, model_config, training_config)
    # The feature cache folder does not change the model, so it is left out.
    embedding_values = dataclasses.asdict(embedding_config)
    embedding_values.pop("cache_dir")
    embedding_values["vectors_sha256"] = (
        file_sha256(Path(embedding_config.vectors_path))
        if embedding_config.vectors_path
        else None
    )
    base_metadata["embeddings"] = embedding_values
    # A resumed run compares the vectors file by its contents, so the same
    # file reached by another path is accepted.
    embedding_identity = {
        key: value for key, value in embedding_values.items() if key != "vectors_path"
    }
    # The data's paths are left out, because the same files reached by another
    # path train the same model. The fingerprints compare their contents.
    data_identity = {
        key: value for key, value in base_metadata["data"].items() if key != "files"
    }
    run_identity = {
        "model": model_config.to_dict(),
        "data": data_identity,
        "embeddings": embedding_identity,
        # --max-length changes the training token ids but not the vocabulary
        "text_encoder": base_metadata["text_encoder"],
    }
    record = record if record is not None else SaveRecord()
    encoded = (train_split, validation_split, test_split)
    warn_about_reviews_without_tokens(validation_split, "validation", "val_acc")
    if test_split is not None:
        warn_about_reviews_without_tokens(test_split, "test", "test_acc")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        if training_config.ensemble_size > 1:
            return _train_ensemble_model(
                lambda: factory.make_model(prepared, model_options or {}),
                encoded,
                output_dir,
                encoder=encoder,
                base_metadata=base_metadata,
                training_config=training_config,
                run_identity=run_identity,
                resume=resume,
                show_progress=show_progress,
                record=record,
            )
        return _train_single_model(
            model,
            encoded,
            output_dir,
            encoder=encoder,
            base_metadata=base_metadata,
            training_config=training_config,
            run_identity=run_identity,
            resume=resume,
            show_progress=show_progress,
            record=record,
        )
    except (OSError, SafetensorError) as err:
        # Training itself reads no files, so these come from writing.
        raise SaveError(_save_failure_message(output_dir, err, record)) from err


def _train_single_model(
    model: SentimentLSTM,
    encoded: tuple[EncodedSplit, EncodedSplit, EncodedSplit | None],
    output_dir: Path,
    *,
    encoder: Any,
    base_metadata: dict[str, Any],
    training_config: TrainingConfig,
    run_identity: dict[str, Any],
    resume: bool,
    show_progress: bool | None,
    record: SaveRecord,
) -> TrainOutcome:
    """Train one network, saving each new best model and a checkpoint per epoch."""
    train_split, validation_split, test_split = encoded
    model_config = model.config
    saved = False

    def save_checkpoint(metrics: EpochMetrics, current: SentimentLSTM) -> None:
        nonlocal saved
        metadata = dict(base_metadata, best_epoch=dataclasses.asdict(metrics))
        weights = {
            name: tensor.detach().cpu().numpy()
            for name, tensor in current.state_dict().items()
        }
        artifact.save_artifact(
            output_dir,
            config=artifact.ArtifactConfig(
                model=model_config.to_dict(), labels=LABEL_NAMES
            ),
            encoder=encoder,
            weights=weights,
            metadata=metadata,
        )
        saved = True
        record.model_epoch = metrics.epoch
        logger.info(
            "saved model of epoch %d (val_acc %.3f) to %s",
            metrics.epoch,
            metrics.validation_accuracy,
            output_dir,
        )

    def end_epoch(history: list[EpochMetrics]) -> None:
        # train() writes the epoch's checkpoint before it calls this
        record.checkpoint_epoch = history[-1].epoch
        # Until this run saves a model, the folder's metrics.json may belong
        # to the weights of an earlier run, so it is left alone.
        if not saved:
            return
        values = {"epochs": [dataclasses.asdict(m) for m in history]}
        write_text_atomic(
            output_dir / HISTORY_FILE, json.dumps(values, indent=2) + "\n"
        )

    checkpoint_path = output_dir / CHECKPOINT_FILE
    if resume:
        _resume_save_state(checkpoint_path, training_config, record)
        saved = record.model_epoch is not None
    warn_about_reviews_without_tokens(train_split)
    result = train(
        model,
        train_split,
        validation_split,
        training_config,
        test_split=test_split,
        on_checkpoint=save_checkpoint,
        on_epoch_end=end_epoch,
        show_progress=show_progress,
        checkpoint_path=checkpoint_path,
        resume=resume,
        run_identity=run_identity,
    )
    with interrupts.deferred():
        if saved:
            remove_checkpoints(output_dir)
            record.checkpoint_epoch = None
        # Otherwise the checkpoint keeps the trained epochs, so that a
        # resumed run with a lower --required-acc-checkpoint can save one.
        record.finished = True
    best = result.best
    history_values = {
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "epochs": [dataclasses.asdict(m) for m in result.history],
    }
    if saved:
        write_text_atomic(
            output_dir / HISTORY_FILE, json.dumps(history_values, indent=2) + "\n"
        )
        # the saved metadata gains the full history once training has ended
        metadata_path = output_dir / artifact.METADATA_FILE
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        metadata["history"] = history_values
        write_text_atomic(
            metadata_path, json.dumps(metadata, indent=2, sort_keys=True) + "\n"
        )
    test_text = (
        f", test_acc {best.test_accuracy:.3f}" if best.test_accuracy is not None else ""
    )
    logger.info(
        "best epoch %d: val_acc %.3f%s",
        result.best_epoch,
        best.validation_accuracy,
        test_text,
    )
    return TrainOutcome(result=result, saved=saved, output_dir=output_dir)


def remove_checkpoints(output_dir: Path) -> None:
    """Remove every resumable checkpoint of a finished run from ``output_dir``.

    Checkpoints of a single model and of ensemble members are both removed,
    so that ``--resume`` cannot continue an older run of the other kind over
    the finished model.
    """
    (output_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    for path in output_dir.glob("checkpoint-member*.pt"):
        path.unlink(missing_ok=True)


def _resume_save_state(
    checkpoint_path: Path, training_config: TrainingConfig, record: SaveRecord
) -> None:
    """Record the model that the interrupted run saved, if it saved one.

    The run saved its best epoch once that epoch reached the required
    accuracy, and always before it wrote the epoch's checkpoint. A model
    found in the folder otherwise comes from an earlier run, so it must
    neither count as this run's model nor get this run's metrics.
    """
    state = load_checkpoint(checkpoint_path)
    record.checkpoint_epoch = int(state["epoch"])
    # The interrupted run may have had a higher --required-acc-checkpoint.
    threshold = saved_threshold(state)
    if threshold is None:
        # NOTE: every version records the threshold. Without it (an edited
        # checkpoint), a lowered one here could claim a model never saved.
        threshold = training_config.required_accuracy
    if float(state["best_accuracy"]) >= threshold:
        record.model_epoch = int(state["best_epoch"])


def _check_model_fits(
    prepared: Any,
    model_options: dict[str, Any],
    train_split: EncodedSplit,
    training_config: TrainingConfig,
) -> None:
    """Reject a network whose training would not fit in the available memory.

    Runs before the network is built, so a size such as ``--num-layers
    100000`` fails at once instead of filling the memory.

    Raises:
        ModelSizeError: If the estimate exceeds the memory available.
    """
    options = dict(model_options)
    if prepared.embedding_dim is not None:
        options["embedding_dim"] = prepared.embedding_dim
    config = ModelConfig(vocab_size=prepared.encoder.vocab_size, **options)
    batch_size = min(training_config.batch_size, len(train_split))
    max_tokens = max(train_split.lengths, default=1)
    needed = estimate_training_memory(
        config, batch_size, max_tokens, training_config.freeze_embeddings
    )
    available = available_memory()
    members = training_config.ensemble_size
    if members > 1:
        # The merged network puts the members' units side by side, so its
        # recurrent weights grow with the square of the member count. The
        # members' best weights are kept until it is built, so they count too.
        merged = dataclasses.replace(
            config,
            embedding_dim=config.embedding_dim * members,
            hidden_dim=config.hidden_dim * members,
        )
        merging = (
            parameter_count(merged) + members * parameter_count(config)
        ) * FLOAT_BYTES
        if available is not None and merging > available >= needed:
            raise ModelSizeError(
                f"the ensemble does not fit in memory: merging its {members} "
                f"members takes at least {_gibibytes(merging)} (a network of "
                f"{parameter_count(merged):,} parameters), but "
                f"{_gibibytes(available)} is available; lower --ensemble-size, "
                "or --lstm-units or --embedding-size"
            )
    if available is None or needed <= available:
        return
    weights = estimate_training_memory(config, 0, 0, training_config.freeze_embeddings)
    if needed - weights > weights:
        # One batch's activations take more memory than the weights.
        fixes = (
            "--batch-size, or --max-length, which cuts each review to that many "
            "tokens, or --lstm-units, --num-layers or --embedding-size"
        )
    else:
        fixes = (
            "--lstm-units, --num-layers, --embedding-size, --max-vocab-size or "
            "--batch-size"
        )
    raise ModelSizeError(
        f"the model does not fit in memory: training it takes at least "
        f"{_gibibytes(needed)} ({parameter_count(config):,} parameters from "
        f"--lstm-units {config.hidden_dim}, --num-layers {config.num_layers}, "
        f"--embedding-size {config.embedding_dim} and {config.vocab_size:,} "
        f"vocabulary entries, and the activations of {batch_size} reviews of up "
        f"to {max_tokens} tokens), but {_gibibytes(available)} is available; "
        f"lower {fixes}"
    )


def _gibibytes(size: int) -> str:
    value = size / 2**30
    return f"{value:.1f} GiB" if value < 1e6 else f"{value:.3g} GiB"


def _save_failure_message(output_dir: Path, err: Exception, record: SaveRecord) -> str:
    """Describe a failed write to the output folder and what the folder keeps."""
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror
    else:
        reason = str(err)
    if record.model_epoch is not None:
        kept_model = f"it keeps the model of epoch {record.model_epoch}"
        if not (output_dir / HISTORY_FILE).is_file():
            kept_model += f", without its {HISTORY_FILE}"
    elif (output_dir / artifact.WEIGHTS_FILE).is_file():
        kept_model = "it keeps the model that was there before this run"
    else:
        kept_model = "no model was saved"
    if record.checkpoint_epoch is not None:
        return (
            f"cannot save to {output_dir}: {reason}; {kept_model}, and its "
            f"{CHECKPOINT_FILE} contains epoch {record.checkpoint_epoch}, so free "
            "some space and repeat the command with --resume"
        )
    retry = "train again"
    if (output_dir / artifact.WEIGHTS_FILE).is_file():
        # The folder now contains a model, which train replaces only with
        # --overwrite.
        retry += " with --overwrite"
    return (
        f"cannot save to {output_dir}: {reason}; {kept_model}; free some space or "
        f"choose another --output-dir, then {retry}"
    )


def _train_ensemble_model(
    build_model: Any,
    encoded: tuple[EncodedSplit, EncodedSplit, EncodedSplit | None],
    output_dir: Path,
    *,
    encoder: Any,
    base_metadata: dict[str, Any],
    training_config: TrainingConfig,
    run_identity: dict[str, Any],
    resume: bool,
    show_progress: bool | None,
    record: SaveRecord,
) -> TrainOutcome:
    """Train the ensemble members, merge them and save the merged network.

    Unlike a single run, the model is saved once, after the last member, if
    the merged network reaches the required validation accuracy.
    """
    train_split, validation_split, test_split = encoded
    ensemble = train_ensemble(
        build_model,
        train_split,
        validation_split,
        training_config,
        test_split=test_split,
        checkpoint_dir=output_dir,
        resume=resume,
        run_identity=run_identity,
        show_progress=show_progress,
    )
    merged = ensemble.model
    test_accuracy = None
    if test_split is not None and len(test_split) > 0:
        test_accuracy = accuracy(merged, test_split, training_config.eval_batch_size)
    history_values = {
        "ensemble_size": training_config.ensemble_size,
        "validation_accuracy": ensemble.validation_accuracy,
        "test_accuracy": test_accuracy,
        "members": [
            {
                "seed": training_config.seed + index,
                "best_epoch": member.best_epoch,
                "stopped_early": member.stopped_early,
                "epochs": [dataclasses.asdict(m) for m in member.history],
            }
            for index, member in enumerate(ensemble.members)
        ],
    }
    summary = EpochMetrics(
        epoch=1,
        train_loss=float(np.mean([m.best.train_loss for m in ensemble.members])),
        train_accuracy=float(
            np.mean([m.best.train_accuracy for m in ensemble.members])
        ),
        validation_accuracy=ensemble.validation_accuracy,
        test_accuracy=test_accuracy,
        seconds=ensemble.seconds,
    )
    saved = ensemble.validation_accuracy >= training_config.required_accuracy
    # A Ctrl-C or SIGTERM waits until the model is saved and the checkpoints,
    # which it replaces, are gone.
    with interrupts.deferred():
        if saved:
            write_text_atomic(
                output_dir / HISTORY_FILE, json.dumps(history_values, indent=2) + "\n"
            )
            metadata = dict(
                base_metadata,
                model=merged.config.to_dict(),
                member_model=base_metadata["model"],
                history=history_values,
            )
            artifact.save_artifact(
                output_dir,
                config=artifact.ArtifactConfig(
                    model=merged.config.to_dict(), labels=LABEL_NAMES
                ),
                encoder=encoder,
                weights={
                    name: tensor.detach().cpu().numpy()
                    for name, tensor in merged.state_dict().items()
                },
                metadata=metadata,
            )
            record.ensemble_saved = True
        remove_checkpoints(output_dir)
        record.finished = True
    test_text = "" if test_accuracy is None else f", test_acc {test_accuracy:.3f}"
    logger.info(
        "merged ensemble of %d: val_acc %.3f%s%s",
        training_config.ensemble_size,
        ensemble.validation_accuracy,
        test_text,
        f"; saved to {output_dir}" if saved else "",
    )
    result = TrainingResult(
        model=merged, history=[summary], best_epoch=1, best_state=merged.state_dict()
    )
    return TrainOutcome(
        result=result, saved=saved, output_dir=output_dir, ensemble=ensemble
    )


def _log_summary(
    splits: Splits,
    train_split: Any,
    encoder: Any,
    model: SentimentLSTM,
    config: TrainingConfig,
) -> None:
    # Reviews without tokens are left out of training, so of its steps too.
    steps = -(-len(train_split.with_tokens()) // config.batch_size)
    parameters = f"{count_parameters(model)}"
    if config.ensemble_size > 1:
        parameters += f" per member, {config.ensemble_size} members"
    logger.info(
        "examples: %d train, %d validation, %d test; vocabulary: %d tokens; "
        "parameters: %s; batch size %d, %d step%s per epoch, up to %d epoch%s",
        len(splits.train),
        len(splits.validation),
        len(splits.test),
        encoder.vocab_size,
        parameters,
        config.batch_size,
        steps,
        "" if steps == 1 else "s",
        config.num_epochs,
        "" if config.num_epochs == 1 else "s",
    )


def _base_metadata(
    splits: Splits,
    encoder: Any,
    model_config: ModelConfig,
    training_config: TrainingConfig,
) -> dict[str, Any]:
    files = splits.files()
    spec = splits.spec
    split_values = {}
    data_values: dict[str, Any] = {
        "files": [str(path) for path in files],
        "fingerprint": data_fingerprint(files),
        "split_sizes": {
            "train": len(splits.train),
            "validation": len(splits.validation),
            "test": len(splits.test),
        },
        "bad_rows_skipped": sum(len(read.bad_rows) for read in splits.reads),
        "left_out_by_stars": sum(read.left_out_by_stars for read in splits.reads),
    }
    if spec is not None:
        split_values = {
            "data": spec.data,
            "validation_data": spec.validation_data,
            "test_data": spec.test_data,
            # A separate file replaces the share of --data that it names.
            "validation_fraction": (
                0.0 if spec.validation_data else spec.validation_fraction
            ),
            "test_fraction": 0.0 if spec.test_data else spec.test_fraction,
        }
    if spec is not None and splits.reads and splits.data_format is not None:
        # evaluate --split compares these with its own read of --data
        data_values["read_options"] = read_options_record(
            spec.read_options, splits.data_format
        )
        data_values["examples_fingerprint"] = examples_fingerprint(
            splits.reads[0].examples
        )
        # evaluate compares this one to warn about the training data in
        # another order
        data_values["review_set_fingerprint"] = review_set_fingerprint(
            splits.reads[0].examples
        )
        if splits.reads[0].columns is not None:
            # The columns as chosen, which the read options leave None when
            # they are detected.
            data_values["columns"] = splits.reads[0].columns
        # "fingerprint" covers separate validation and test files too
        data_values["data_files_fingerprint"] = data_fingerprint(splits.reads[0].files)
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": data_values,
        # evaluate counts the reviews it scores that are among these
        TRAINING_REVIEWS_KEY: training_reviews_record(splits.train),
        "split": split_values,
        "text_encoder": dataclasses.asdict(encoder.config),
        "vocab_size": encoder.vocab_size,
        "model": model_config.to_dict(),
        "training": training_config.to_dict(),
        "versions": package_versions(),
    }


def package_versions() -> dict[str, str]:
    """Return the versions of Python and the packages a model depends on."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("sentiment-lstm", "numpy", "tokenizers", "safetensors"):
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

"""Batched inference on a saved model: ``SentimentModel.load(dir).predict(texts)``.

The scoring backend sits behind one small interface, :class:`Backend`. The
ONNX Runtime backend scores ``model.onnx`` (written by ``sentiment-lstm
export``) and the PyTorch backend rebuilds the network from
``model.safetensors``. This module imports nothing from training, and PyTorch
only when the PyTorch backend is chosen, so an install with only
``onnxruntime`` can score exported models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentiment_lstm import artifact, interrupts
from sentiment_lstm import text as text_module
from sentiment_lstm.extras import install_hint
from sentiment_lstm.files import file_sha256, folder_locked
from sentiment_lstm.text import (
    MAX_REVIEW_CHARS,
    TOO_LONG_REASON,
    PackedTokenIds,
    TextEncoder,
)

logger = logging.getLogger(__name__)

# Loads of a model that a train run in progress is saving, 0.25 s apart,
# before the error is raised.
LOAD_ATTEMPTS = 8
LOAD_RETRY_SECONDS = 0.25

# Characters tokenized between two checks for close(), so that a stopping
# server does not wait for the tokenizing of a large request. An estimate: a
# request of 2.3 million accented characters took 0.85 s on a 2-core Intel
# Xeon, so about 40 ms a part. A part also has at least ENCODE_PART_TEXTS
# reviews, because TextEncoder.encode_packed tokenizes ASCII reviews in bulk
# only from 20 of them on.
ENCODE_PART_CHARS = 100_000
ENCODE_PART_TEXTS = 64

# Error of a review that gives no tokens, such as "", "  " or "<br /><br />".
EMPTY_REVIEW = (
    "no tokens to score: the review is empty or only whitespace, <br /> tags "
    "and invisible characters"
)
BACKEND_CHOICES = ("auto", "torch", "onnx")

# Names of the graph's inputs and output in model.onnx.
INPUT_TOKEN_IDS = "token_ids"
INPUT_LENGTHS = "lengths"
OUTPUT_PROBABILITIES = "probabilities"

# Keys of model.onnx's metadata_props.
METADATA_FORMAT_VERSION = "sentiment_lstm.format_version"
METADATA_PACKAGE_VERSION = "sentiment_lstm.version"
METADATA_LABELS = "sentiment_lstm.labels"
METADATA_WEIGHTS_SHA256 = "sentiment_lstm.weights_sha256"
METADATA_MODEL_SHA256 = "sentiment_lstm.model_config_sha256"
METADATA_ENCODER_SHA256 = "sentiment_lstm.encoder_sha256"

# Maximum padded tokens per forward pass. The LSTM's buffers grow with batch
# times sequence length (ONNX Runtime keeps 4 x hidden floats of input gates
# per token, 13 MB here at 100 units), so batches of long reviews get fewer
# rows. Scoring 100,000 reviews peaked at 317 MB RSS with this value and at
# 408 MB with 16384, at the same CPU time (onnxruntime 1.32, 2 cores).
MAX_BATCH_TOKENS = 8192
# Forward passes of at most this many padded tokens run at once in any
# thread. Larger ones wait for one of the ONNX backend's `threads` slots,
# because each uses buffers that grow with its tokens. A pass of 8,192 tokens
# of a 500-unit bidirectional model took about 250 MB, and 16 such passes
# from the threads of a server's requests took 4 GB. A pass on the thread of
# an event loop, such as a short request's on a server, takes no slot,
# because the loop must not wait.
SLOT_FREE_TOKENS = 1024
# How often a pass that waits for a slot checks whether terminate() was called.
_SLOT_WAIT_SECONDS = 0.05
# Smallest batch that score_token_ids splits off to run beside others; below
# this a thread hand-off costs more than the pass itself.
MIN_PARALLEL_BATCH = 16

_EXPORT_HINT = "run 'sentiment-lstm export --model {directory}'"


class ScoringStopped(RuntimeError):
    """Scoring was stopped by :meth:`SentimentModel.close`."""

    def __init__(self) -> None:
        super().__init__(
            "the model was closed, so it scores no more reviews; load it again"
        )


class ScoringCancelled(Exception):
    """Scoring was stopped because the caller's ``cancelled`` callback returned True."""

    def __init__(self) -> None:
        super().__init__("scoring was cancelled by the caller")


@dataclass(frozen=True)
class Prediction:
    """The score of one review.

    Attributes:
        text: The review as given.
        positive: Probability that the review is positive, or None if it could
            not be scored.
        negative: ``1 - positive``, or None.
        label: ``"positive"`` or ``"negative"``, whichever is more probable.
        error: Why the review was not scored, e.g. it was empty.
    """

    text: str
    positive: float | None
    negative: float | None
    label: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        values = {
            "text": self.text,
            "positive": self.positive,
            "negative": self.negative,
            "label": self.label,
        }
        if self.error is not None:
            values["error"] = self.error
        return values


class Backend(Protocol):
    """Turns padded token ids into class probabilities.

    A backend may also set ``parallel_batches`` to the number of batches that
    :meth:`SentimentModel.score_token_ids` should score at once from separate
    threads; its ``probabilities`` must then be thread-safe. Without it,
    batches run one after another. A call with a ``cancelled`` callback
    passes it to a ``probabilities`` that takes a ``cancelled`` keyword, so
    that a backend which may wait before a pass can check it meanwhile.
    """

    name: str

    def probabilities(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Return (batch, classes) probabilities for (batch, seq_len) ids."""
        ...


class TorchBackend:
    """Scores with the PyTorch module rebuilt from the saved config.

    Forward passes run one at a time, each on PyTorch's threads. Passes
    from many threads at once would share the same cores and all end late,
    and a stopping server would wait for each of them.

    Raises:
        ImportError: If PyTorch is not installed.
    """

    name = "torch"

    def __init__(self, model_config: dict[str, Any], weights: dict[str, np.ndarray]):
        try:
            # Held back for the same reason as in import_onnxruntime.
            with interrupts.deferred():
                import torch
        except ImportError as err:
            raise ImportError(
                f"the torch backend needs PyTorch, which failed to import ({err}); "
                "install PyTorch, or export the model with 'sentiment-lstm export' "
                "where PyTorch is installed and use the onnx backend"
            ) from err

        from sentiment_lstm.model import ModelConfig, SentimentLSTM

        self._torch = torch
        self.module = SentimentLSTM(ModelConfig.from_dict(model_config))
        state = {name: torch.from_numpy(array) for name, array in weights.items()}
        self.module.load_state_dict(state, strict=True)
        self.module.eval()
        self._terminated = False
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()

    def probabilities(
        self,
        token_ids: np.ndarray,
        lengths: np.ndarray,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Run one forward pass, after those of other threads.

        ``cancelled`` is accepted for the :class:`Backend` protocol; the
        caller checks it between passes.

        Raises:
            ScoringStopped: If :meth:`terminate` was called.
        """
        torch = self._torch
        if self._lock_pid != os.getpid():
            # A process forked while another thread held the lock would wait
            # for it for ever.
            self._lock = threading.Lock()
            self._lock_pid = os.getpid()
        with self._lock:
            if self._terminated:
                raise ScoringStopped()
            with torch.inference_mode():
                logits = self.module(
                    torch.from_numpy(token_ids), torch.from_numpy(lengths)
                )
                return torch.softmax(logits, dim=1).numpy()

    def terminate(self) -> None:
        """Make the forward passes that wait, and later ones, raise."""
        self._terminated = True


class OnnxBackend:
    """Scores ``model.onnx`` with ONNX Runtime on the CPU.

    Each forward pass runs on one thread, and ``parallel_batches`` passes run
    at once on separate threads. An LSTM steps through time, so a pass split
    over several threads synchronises them at every step. On 50,000 reviews
    and 2 cores, two intra-op threads used 30% more CPU time than two
    single-threaded passes side by side (onnxruntime 1.32, AMD EPYC).

    Args:
        path: The ONNX file written by ``sentiment-lstm export``.
        threads: Forward passes that may run at once. Default: the number of
            physical cores this process may run on.

    Raises:
        ImportError: If onnxruntime is not installed.
        ArtifactError: If the file is corrupt or lacks the expected inputs
            and output.
    """

    name = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            onnxruntime = import_onnxruntime()
        except ImportError as err:
            raise ImportError(
                f"the onnx backend needs onnxruntime, which failed to import "
                f"({err}); install it with: {install_hint('serve')}"
            ) from err

        self.path = Path(path)
        if threads is not None:
            _check_count("threads", threads)
        self.threads = threads or physical_core_count()
        self.parallel_batches = self.threads
        # Large passes from any thread take one of these slots, so that at
        # most `threads` of them hold their buffers at once.
        self._slots = threading.BoundedSemaphore(self.threads)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = (
            onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        options.log_severity_level = 3
        # Warnings of the runtime itself would otherwise print on stderr.
        onnxruntime.set_default_logger_severity(3)
        try:
            # ONNX Runtime reports an unreadable file as a corrupt model.
            with open(self.path, "rb"):
                pass
        except OSError as err:
            raise artifact.ArtifactError(
                f"cannot read {self.path}: {err.strerror or err}; check the "
                "file's permissions"
            ) from err
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except _onnxruntime_errors(onnxruntime) as err:
            if "Unsupported model IR version" in str(err):
                raise artifact.ArtifactError(
                    f"{self.path} is newer than onnxruntime "
                    f"{onnxruntime.__version__} can read ({err}); upgrade "
                    "onnxruntime, or export the model again with this version "
                    "of sentiment-lstm, which writes the oldest IR version its "
                    "opset allows"
                ) from err
            raise artifact.ArtifactError(
                f"{self.path} is corrupt or not an ONNX model ({err}); "
                f"{_EXPORT_HINT.format(directory=self.path.parent)} again"
            ) from err
        self._check_signature()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        # Shared by every forward pass, so that terminate() stops them all.
        self._run_options = onnxruntime.RunOptions()
        # A stopped pass would otherwise log an error line on stderr; other
        # failures still raise.
        self._run_options.log_severity_level = 4

    def _check_signature(self) -> None:
        inputs = sorted(item.name for item in self.session.get_inputs())
        outputs = [item.name for item in self.session.get_outputs()]
        expected_inputs = sorted((INPUT_TOKEN_IDS, INPUT_LENGTHS))
        if inputs != expected_inputs or OUTPUT_PROBABILITIES not in outputs:
            raise artifact.ArtifactError(
                f"{self.path} has inputs {inputs} and outputs {outputs}, expected "
                f"inputs {expected_inputs} and output {OUTPUT_PROBABILITIES!r}; "
                f"{_EXPORT_HINT.format(directory=self.path.parent)} again"
            )

    def probabilities(
        self,
        token_ids: np.ndarray,
        lengths: np.ndarray,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Run one forward pass; safe to call from several threads at once.

        A pass of more than ``SLOT_FREE_TOKENS`` padded ids first waits for
        one of ``threads`` slots, unless it runs on the thread of an asyncio
        event loop, which must not wait.

        Raises:
            ScoringStopped: If :meth:`terminate` was called.
            ScoringCancelled: If ``cancelled`` returned True while the pass
                waited for a slot.
        """
        feed = {INPUT_TOKEN_IDS: token_ids, INPUT_LENGTHS: lengths}
        if token_ids.size <= SLOT_FREE_TOKENS or _on_event_loop():
            return self._run(feed)
        while not self._slots.acquire(timeout=_SLOT_WAIT_SECONDS):
            if self._run_options.terminate:
                raise ScoringStopped()
            if cancelled is not None and cancelled():
                raise ScoringCancelled()
        try:
            return self._run(feed)
        finally:
            self._slots.release()

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return self.session.run([OUTPUT_PROBABILITIES], feed, self._run_options)[0]
        except Exception:
            if self._run_options.terminate:
                raise ScoringStopped() from None
            raise

    def terminate(self) -> None:
        """Stop the forward passes in progress and make later ones raise."""
        # ONNX Runtime checks the flag between the nodes of a graph and
        # ends each run that uses these options with an error.
        self._run_options.terminate = True


def import_onnxruntime() -> Any:
    """Import onnxruntime with its usage telemetry off, unless the user chose.

    ONNX Runtime 1.29 and later record usage telemetry on Linux as well, and
    keep a device id and an event store under ``~/.cache/Microsoft``. Scoring
    reviews should report nothing to anyone by default, so
    ``ORT_DISABLE_TELEMETRY`` is set to 1 when it is not set already. It must
    be set before the first import of onnxruntime in the process.

    A Ctrl-C or SIGTERM during the import is held back until it ends, because
    the import's native start-up would turn it into an ImportError.

    Raises:
        ImportError: If onnxruntime is not installed.
        KeyboardInterrupt: If a signal arrived during the import, in a
            command line that handles them (see :mod:`interrupts`).
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    with interrupts.deferred():
        import onnxruntime

    return onnxruntime


class PendingScores:
    """Scores of encoded reviews that may still be running on a thread pool.

    Made by :meth:`SentimentModel.submit_token_ids`.
    """

    def __init__(self, count: int, positive_index: int) -> None:
        self._count = count
        self._positive_index = positive_index
        self._parts: list[tuple[np.ndarray, np.ndarray | Future]] = []

    def add(self, rows: np.ndarray, probabilities: np.ndarray | Future) -> None:
        self._parts.append((rows, probabilities))

    def result(self) -> np.ndarray:
        """Return P(positive) per review once every batch is scored.

        A review without tokens gets NaN.

        Raises:
            Exception: Whatever a forward pass raised.
        """
        positive = np.full(self._count, np.nan, dtype=np.float64)
        for rows, part in self._parts:
            probabilities = _batch_result(part) if isinstance(part, Future) else part
            positive[rows] = probabilities[:, self._positive_index]
        return positive


def _batch_result(future: Future) -> np.ndarray:
    """Wait for a forward pass on the thread pool and return its output.

    Raises:
        ScoringStopped: If :meth:`SentimentModel.close` cancelled the pass,
            which nothing else cancels.
    """
    try:
        return future.result()
    except CancelledError:
        raise ScoringStopped() from None


class SentimentModel:
    """A trained model ready to score reviews.

    Example:
        >>> model = SentimentModel.load("models/rt-polarity")
        >>> model.predict(["a gorgeous, witty film"])[0].positive
        0.93...
    """

    def __init__(
        self,
        encoder: TextEncoder,
        backend: Backend,
        labels: Sequence[str],
        directory: Path | None = None,
        metadata: dict[str, Any] | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        self.encoder = encoder
        self.backend = backend
        self.labels = tuple(labels)
        self.directory = directory
        self.metadata = metadata or {}
        self.model_config = model_config or {}
        self._positive_index = self.labels.index("positive")
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid: int | None = None
        self._executor_lock = threading.Lock()
        self._closed = False

    @classmethod
    def load(
        cls, directory: str | Path, backend: str = "auto", threads: int | None = None
    ) -> SentimentModel:
        """Load a model directory written by ``sentiment-lstm train``.

        Args:
            directory: The model directory.
            backend: ``onnx`` scores ``model.onnx`` with ONNX Runtime,
                ``torch`` rebuilds the network with PyTorch, and ``auto`` picks
                ``onnx`` when ``model.onnx`` exists and onnxruntime imports,
                else ``torch``.
            threads: ONNX Runtime forward passes that run at once, each on
                one thread; default one per physical core. The PyTorch backend
                keeps PyTorch's own thread setting.

        Raises:
            ArtifactError: If a file is missing or corrupt, ``model.onnx``
                does not belong to the weights beside it, or the weights or
                text encoder differ from those saved with the model. The
                message names the file.
            ImportError: If the chosen backend's runtime is not installed.
            TypeError: If ``threads`` is not an int.
            ValueError: If ``backend`` is not one of ``BACKEND_CHOICES``, or
                ``threads`` is below 1 or above the logical CPUs.
        """
        if backend not in BACKEND_CHOICES:
            raise ValueError(
                f"backend must be one of {', '.join(BACKEND_CHOICES)}, "
                f"got {backend!r}"
            )
        if threads is not None:
            _check_count("threads", threads)
            cpus = os.cpu_count() or 1
            if threads > cpus:
                # As the command line's --threads: more forward passes at once
                # than CPUs only make each of them wait.
                raise ValueError(
                    f"threads must be at most {cpus}, the logical CPUs of this "
                    f"machine, got {threads}"
                )
        directory = Path(directory)
        attempts = 0
        read_after_unlock = False
        while True:
            try:
                return cls._load(directory, backend, threads)
            except artifact.ArtifactError as err:
                # train --overwrite replaces the files of a model one by one,
                # so a load in between can find the files of two epochs.
                has_config = os.path.exists(directory / artifact.CONFIG_FILE)
                saving = has_config and folder_locked(directory)
                attempts += 1
                if not saving:
                    # The run may have saved its last file and released the
                    # folder between the reads and this check. Its files are
                    # then complete, so a second read decides.
                    if has_config and not read_after_unlock:
                        read_after_unlock = True
                        continue
                    raise
                if attempts == LOAD_ATTEMPTS:
                    # The error names a file of the other epoch, and its advice
                    # to copy or retrain does not apply.
                    raise artifact.ArtifactError(
                        f"{directory} is being written by a 'sentiment-lstm "
                        "train' run or export in progress, and its files are "
                        "not yet all of one save; try again once it has "
                        "finished saving"
                    ) from err
                time.sleep(LOAD_RETRY_SECONDS)

    @classmethod
    def _load(
        cls, directory: Path, backend: str, threads: int | None
    ) -> SentimentModel:
        """Load a model directory, as :meth:`load` does, without retrying."""
        config = artifact.load_config(directory)
        encoder = artifact.load_matching_encoder(directory, config)
        metadata = artifact.load_metadata(directory)
        chosen = _choose_backend(directory, backend)
        if chosen == "onnx":
            scorer: Backend = _load_onnx_backend(directory, config, threads)
        else:
            scorer = _load_torch_backend(directory, config)
            # After the loader, which names a missing or corrupt file more
            # exactly. PyTorch does not read model.onnx.
            artifact.check_saved_files(directory, config, skip=(artifact.ONNX_FILE,))
        logger.debug("loaded %s with the %s backend", directory, scorer.name)
        _warn_of_unchecked_files(directory, config, chosen)
        return cls(
            encoder,
            scorer,
            config.labels,
            directory=directory,
            metadata=metadata,
            model_config=config.model,
        )

    def predict_proba(
        self,
        texts: Iterable[str],
        batch_size: int = 256,
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Return P(positive) per review, NaN where a review cannot be scored.

        A review cannot be scored when it has no tokens or more than
        ``MAX_REVIEW_CHARS`` characters.

        Args:
            texts: Reviews in any order, in a list or any other iterable; the
                result keeps that order.
            batch_size: Reviews per forward pass.
            cancelled: Called from the scoring thread before each part of the
                tokenizing and each forward pass; once it returns True,
                scoring stops. ``serve`` passes a check of whether the client
                has disconnected.

        Raises:
            ScoringCancelled: If ``cancelled`` returned True.
            ScoringStopped: If :meth:`close` was called.
        """
        return self._probabilities(
            _review_list(texts, "predict_proba"), batch_size, cancelled=cancelled
        )

    def _probabilities(
        self,
        texts: list[str],
        batch_size: int,
        method: str = "predict_proba",
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Return what predict_proba does for a list; ``method`` names the caller."""
        _check_cancelled(cancelled, method)
        too_long = [
            isinstance(text, str) and len(text) > MAX_REVIEW_CHARS for text in texts
        ]
        if any(too_long):
            texts = ["" if long else text for text, long in zip(texts, too_long)]
        try:
            token_ids = self._encode(texts, cancelled)
        except TypeError as err:
            # The encoder names an item that is not a str, with its index.
            raise TypeError(f"{method}: {err}") from err
        return self.score_token_ids(token_ids, batch_size, cancelled=cancelled)

    def _check_running(self, cancelled: Callable[[], bool] | None) -> None:
        """Raise if :meth:`close` was called or the caller cancelled.

        Raises:
            ScoringStopped: If :meth:`close` was called.
            ScoringCancelled: If ``cancelled`` returns True.
        """
        if self._closed:
            raise ScoringStopped()
        if cancelled is not None and cancelled():
            raise ScoringCancelled()

    def _encode(
        self, texts: list[str], cancelled: Callable[[], bool] | None = None
    ) -> PackedTokenIds:
        """Tokenize texts in parts of ``ENCODE_PART_TEXTS`` or more reviews.

        A part ends once it also has ``ENCODE_PART_CHARS`` characters.

        Raises:
            ScoringStopped: If :meth:`close` was called before a part.
            ScoringCancelled: If ``cancelled`` returned True before a part.
        """
        if not all(isinstance(text, str) for text in texts):
            # One part, so that the encoder's error gives the item's index.
            return PackedTokenIds.from_lists(self.encoder.encode_packed(texts))
        parts = []
        start = 0
        while start < len(texts) or not parts:
            self._check_running(cancelled)
            end = start
            chars = 0
            while end < len(texts) and (
                end - start < ENCODE_PART_TEXTS or chars < ENCODE_PART_CHARS
            ):
                chars += len(texts[end])
                end += 1
            parts.append(
                PackedTokenIds.from_lists(self.encoder.encode_packed(texts[start:end]))
            )
            start = end
        return PackedTokenIds.concatenate(parts)

    def score_token_ids(
        self,
        token_ids: Sequence[Sequence[int]],
        batch_size: int = 256,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Return P(positive) per encoded review, NaN where it has no tokens.

        Reviews are sorted by length and scored in batches of similar length,
        so little time goes to padding. A batch contains at most ``batch_size``
        reviews and at most ``max_batch_tokens`` padded tokens, so batches of
        long reviews are smaller and the memory of one forward pass is
        bounded. With a backend that sets ``parallel_batches`` (ONNX Runtime),
        that many batches run at once on a thread pool kept by this model,
        except that a call of at most ``MIN_PARALLEL_BATCH`` reviews runs in
        the calling thread.

        Args:
            token_ids: Output of ``self.encoder.encode_packed`` or
                ``self.encoder.encode_batch``.
            batch_size: Maximum reviews per forward pass.
            max_batch_tokens: Maximum reviews times padded length per forward
                pass; a single review longer than this is still scored alone.
            cancelled: Called before each batch is padded; once it returns
                True, no more batches start (see :meth:`predict_proba`).

        Returns:
            Float64 array of shape (len(token_ids),), in input order.

        Raises:
            ValueError: If ``batch_size`` or ``max_batch_tokens`` is below 1.
            ScoringCancelled: If ``cancelled`` returned True.
            ScoringStopped: If :meth:`close` was called.
        """
        _check_cancelled(cancelled, "score_token_ids")
        batches, workers = self._plan(
            token_ids, batch_size, max_batch_tokens, cancelled
        )
        scores = PendingScores(len(token_ids), self._positive_index)
        for rows, probabilities in self._run_batches(batches, workers, cancelled):
            scores.add(rows, probabilities)
        return scores.result()

    def submit_token_ids(
        self,
        token_ids: Sequence[Sequence[int]],
        batch_size: int = 256,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
    ) -> PendingScores:
        """Start scoring encoded reviews, and return before they are scored.

        Takes the arguments of :meth:`score_token_ids`. With a backend that
        sets ``parallel_batches``, the padded batches of a call of more than
        ``MIN_PARALLEL_BATCH`` reviews are all queued on this model's thread
        pool at once and the call returns. The caller can read
        and write other reviews meanwhile. Batches queued by later calls run
        after these. All padded batches stay in memory until scored, so
        callers pass bounded chunks. Other backends score before returning.

        Returns:
            A handle whose ``result()`` waits for the scores and returns what
            :meth:`score_token_ids` would.

        Raises:
            ValueError: If ``batch_size`` or ``max_batch_tokens`` is below 1.
        """
        batches, workers = self._plan(token_ids, batch_size, max_batch_tokens)
        pending = PendingScores(len(token_ids), self._positive_index)
        if workers <= 1:
            for rows, ids, batch_lengths in batches:
                pending.add(rows, self.backend.probabilities(ids, batch_lengths))
            return pending
        executor = self._thread_pool(workers)
        for rows, ids, batch_lengths in batches:
            pending.add(rows, self._submit(executor, ids, batch_lengths))
        return pending

    def _plan(
        self,
        token_ids: Sequence[Sequence[int]],
        batch_size: int,
        max_batch_tokens: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> tuple[Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
        """Return the batches of the scorable reviews and the workers to use.

        Raises:
            ScoringStopped: If :meth:`close` was called, even for no reviews.
        """
        if self._closed:
            raise ScoringStopped()
        for name, value in (
            ("batch_size", batch_size),
            ("max_batch_tokens", max_batch_tokens),
        ):
            _check_count(name, value)
        packed = PackedTokenIds.from_lists(token_ids)
        lengths = packed.lengths
        scorable = np.flatnonzero(lengths)
        order = scorable[np.argsort(lengths[scorable], kind="stable")]
        workers = getattr(self.backend, "parallel_batches", 1)
        if len(order) <= MIN_PARALLEL_BATCH:
            # One small batch runs in the calling thread, so that it does not
            # wait behind the batches of other calls on the thread pool.
            workers = 1
        if workers > 1:
            # Enough batches to keep every worker busy on mid-sized inputs.
            share = -(-len(order) // workers)
            batch_size = min(batch_size, max(share, MIN_PARALLEL_BATCH))
        batches = self._batches(
            packed, order, lengths[order], batch_size, max_batch_tokens, cancelled
        )
        return batches, workers

    def _batches(
        self,
        token_ids: PackedTokenIds,
        order: np.ndarray,
        sorted_lengths: np.ndarray,
        batch_size: int,
        max_batch_tokens: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (rows, padded ids, lengths) of consecutive length-sorted batches.

        Raises:
            ScoringStopped: Before a batch, once :meth:`close` was called.
            ScoringCancelled: Before a batch, once ``cancelled`` returns True.
        """
        start = 0
        while start < len(order):
            self._check_running(cancelled)
            stop = _batch_stop(sorted_lengths, start, batch_size, max_batch_tokens)
            rows = order[start:stop]
            batch_lengths = sorted_lengths[start:stop]
            ids = token_ids.padded(rows, self.encoder.pad_index)
            yield rows, ids, batch_lengths
            start = stop

    def _run_batches(
        self,
        batches: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
        workers: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (rows, probabilities) per batch, scoring up to ``workers`` at once."""
        options = {}
        if cancelled is not None and _takes_cancelled(self.backend.probabilities):
            options["cancelled"] = cancelled
        if workers <= 1:
            for rows, ids, batch_lengths in batches:
                yield rows, self.backend.probabilities(ids, batch_lengths, **options)
            return
        executor = self._thread_pool(workers)
        pending: deque[tuple[np.ndarray, Future]] = deque()
        try:
            # At most two batches per worker are padded ahead, which bounds
            # memory.
            for rows, ids, batch_lengths in batches:
                future = self._submit(executor, ids, batch_lengths, **options)
                pending.append((rows, future))
                if len(pending) >= 2 * workers:
                    done_rows, done = pending.popleft()
                    yield done_rows, _batch_result(done)
            while pending:
                done_rows, done = pending.popleft()
                yield done_rows, _batch_result(done)
        finally:
            # A cancelled or failed call leaves no queued batch behind; a
            # pass already running ends on its own.
            for _, future in pending:
                future.cancel()

    def _submit(
        self,
        executor: ThreadPoolExecutor,
        ids: np.ndarray,
        lengths: np.ndarray,
        **options: Any,
    ) -> Future:
        """Queue one forward pass on the thread pool."""
        try:
            return executor.submit(self.backend.probabilities, ids, lengths, **options)
        except RuntimeError:
            # The pool was shut down by close() after this batch was padded.
            if self._closed:
                raise ScoringStopped() from None
            raise

    def _thread_pool(self, workers: int) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._closed:
                raise ScoringStopped()
            # A process forked from this one inherits the pool but none of its
            # threads, so batches submitted to it there would never run.
            if self._executor is None or self._executor_pid != os.getpid():
                self._executor = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix="sentiment-lstm-scorer"
                )
                self._executor_pid = os.getpid()
            return self._executor

    def close(self) -> None:
        """Stop scoring for good, so that the threads that score return at once.

        Batches queued on this model's thread pool are cancelled, and forward
        passes in progress with ONNX Runtime are stopped. A PyTorch forward
        pass in progress runs to its end, and those waiting for it raise.
        Calls that are scoring, and every later one, raise
        :class:`ScoringStopped`. ``serve`` calls this once the server has
        stopped, because Python waits for those threads before the process
        ends.
        """
        with self._executor_lock:
            self._closed = True
            executor = self._executor
        terminate = getattr(self.backend, "terminate", None)
        if terminate is not None:
            terminate()
        if executor is not None and self._executor_pid == os.getpid():
            executor.shutdown(wait=False, cancel_futures=True)

    def predict(
        self,
        texts: Iterable[str],
        batch_size: int = 256,
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[Prediction]:
        """Score reviews; one that cannot be scored gets a Prediction with ``error``.

        Args:
            texts: Reviews in any order, in a list or any other iterable; the
                result keeps that order.
            batch_size: Reviews per forward pass.
            cancelled: See :meth:`predict_proba`.

        Returns:
            One Prediction per review.

        Raises:
            ScoringCancelled: If ``cancelled`` returned True.
            ScoringStopped: If :meth:`close` was called.
        """
        texts = _review_list(texts, "predict")
        positive = self._probabilities(texts, batch_size, "predict", cancelled)
        predictions = []
        for text, probability in zip(texts, positive.tolist()):
            if math.isnan(probability):
                reason = (
                    TOO_LONG_REASON if len(text) > MAX_REVIEW_CHARS else EMPTY_REVIEW
                )
                predictions.append(Prediction(text, None, None, None, reason))
                continue
            label = "positive" if probability >= 0.5 else "negative"
            predictions.append(Prediction(text, probability, 1.0 - probability, label))
        return predictions


def physical_core_count() -> int:
    """Return the number of physical cores this process may run on.

    Hyperthreads of one core count once. Falls back to the number of usable
    logical CPUs where Linux's sysfs topology is not available.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus) or 1
        cores.add((package, core))
    return len(cores) or 1


def _review_list(texts: object, method: str) -> list[str]:
    """Return the reviews of ``texts`` as a list, or raise TypeError.

    Iterating over a str gives its characters, over bytes ints, over a dict
    its keys and over a pandas DataFrame its column labels, so each is
    rejected rather than scored item by item.
    """
    if isinstance(texts, str):
        raise TypeError(
            f"{method} takes a list of reviews, not a single string; wrap it in "
            "a list, as in [review]"
        )
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(
            f"{method} takes a list of reviews as str, got {type(texts).__name__}; "
            "decode it to str and wrap it in a list"
        )
    if isinstance(texts, Mapping):
        raise TypeError(
            f"{method} takes a list of reviews, got a {type(texts).__name__}, "
            "whose keys would be scored; pass a list of its reviews, such as "
            "list(reviews.values())"
        )
    if hasattr(texts, "columns") and hasattr(texts, "iloc"):
        # A pandas DataFrame iterates over its column labels.
        raise TypeError(
            f"{method} takes a list of reviews, got a {type(texts).__name__}, "
            "whose column names would be scored; pass its review column, such "
            'as df["review"]'
        )
    try:
        iterator = iter(texts)  # type: ignore[call-overload]
    except TypeError:
        preview = repr(texts)
        preview = preview if len(preview) <= 60 else preview[:57] + "..."
        raise TypeError(
            f"{method} takes a list of reviews, got {type(texts).__name__} {preview}"
        ) from None
    return list(iterator)


def _takes_cancelled(probabilities: Callable[..., Any]) -> bool:
    """Return whether a backend's ``probabilities`` takes ``cancelled``.

    Backends written before the argument, and wrappers of one, take two.
    """
    import inspect

    try:
        parameters = inspect.signature(probabilities).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        parameter.name == "cancelled" or parameter.kind is parameter.VAR_KEYWORD
        for parameter in parameters
    )


def _on_event_loop() -> bool:
    """Return whether this thread runs an asyncio event loop, as a server's does."""
    # Without asyncio imported, no loop runs. Importing it here would add to
    # the command line's start-up time.
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _check_cancelled(cancelled: object, method: str) -> None:
    """Raise TypeError unless ``cancelled`` is None or can be called."""
    if cancelled is not None and not callable(cancelled):
        raise TypeError(
            f"{method}: cancelled must be a function of no arguments that "
            "returns True once scoring should stop, such as the is_set method "
            f"of a threading.Event, got {type(cancelled).__name__} {cancelled!r}"
        )


def _check_count(name: str, value: object) -> None:
    """Raise unless value is an int of at least 1.

    Raises:
        TypeError: If value is not an int (a bool is not one).
        ValueError: If value is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def model_config_sha256(config: artifact.ArtifactConfig) -> str:
    """Return the hex SHA-256 of the network settings in ``config.json``."""
    return artifact.model_settings_sha256(config.model)


def encoder_sha256(directory: Path) -> str:
    """Return the hex SHA-256 of the text encoder's files in a model directory.

    Raises:
        OSError: If a file cannot be read.
    """
    digest = hashlib.sha256()
    for name in (text_module.CONFIG_FILENAME, text_module.TOKENIZER_FILENAME):
        digest.update(name.encode("ascii") + b"\0")
        digest.update(bytes.fromhex(file_sha256(directory / name)))
    return digest.hexdigest()


def _choose_backend(directory: Path, backend: str) -> str:
    if backend == "torch":
        return "torch"
    onnx_path = directory / artifact.ONNX_FILE
    if os.path.lexists(onnx_path) and not onnx_path.is_file():
        kind = artifact.not_a_file_kind(onnx_path)
        raise artifact.ArtifactError(
            f"{onnx_path} is {kind}, not a regular file; move it away, then "
            f"{_EXPORT_HINT.format(directory=directory)} again"
        )
    if backend == "onnx":
        if not onnx_path.is_file():
            raise artifact.ArtifactError(
                f"{onnx_path} is missing, so the onnx backend cannot load the "
                f"model; {_EXPORT_HINT.format(directory=directory)} to create it"
            )
        return "onnx"
    if not onnx_path.is_file():
        if importlib.util.find_spec("torch") is None:
            # A serving install without PyTorch needs the exported file.
            raise ImportError(
                f"{onnx_path} is missing, and the other backend needs PyTorch, "
                f"which is not installed; "
                f"{_EXPORT_HINT.format(directory=directory)} where PyTorch is "
                f"installed ({install_hint('train')}) and copy model.onnx here"
            )
        return "torch"
    try:
        import_onnxruntime()
    except ImportError as err:
        if importlib.util.find_spec("torch") is None:
            raise ImportError(
                f"{onnx_path} needs onnxruntime, which failed to import ({err}), "
                "and PyTorch, the other backend, is not installed either; "
                f"install onnxruntime with: {install_hint('serve')}"
            ) from err
        logger.info(
            "%s exists but onnxruntime failed to import (%s), so PyTorch scores",
            onnx_path,
            err,
        )
        return "torch"
    return "onnx"


def _warn_of_unchecked_files(
    directory: Path, config: artifact.ArtifactConfig, backend: str
) -> None:
    """Log a warning naming the files read that have no recorded SHA-256."""
    unchecked = [
        name
        for name in artifact.unchecked_files(directory, config)
        if backend == "onnx" or name != artifact.ONNX_FILE
    ]
    if not unchecked:
        return
    fixes = []
    if any(name != artifact.ONNX_FILE for name in unchecked):
        fixes.append("retrain to record those of the saved files")
    if artifact.ONNX_FILE in unchecked:
        if (directory / artifact.WEIGHTS_FILE).is_file():
            fixes.append(
                f"run 'sentiment-lstm export --model {directory}' again for "
                f"{artifact.ONNX_FILE}"
            )
        else:
            fixes.append(
                f"export the full model folder again and copy its "
                f"{artifact.ONNX_FILE} and {artifact.CONFIG_FILE} here"
            )
    logger.warning(
        "%s records no SHA-256 of %s, so %s not checked against the files "
        "saved with the model; %s",
        directory / artifact.CONFIG_FILE,
        ", ".join(unchecked),
        "it is" if len(unchecked) == 1 else "they are",
        ", and ".join(fixes),
    )


def _load_torch_backend(directory: Path, config: artifact.ArtifactConfig) -> Backend:
    weights = artifact.load_weights(directory)
    try:
        backend = TorchBackend(config.model, weights)
    except (ValueError, RuntimeError, KeyError) as err:
        # Weights copied from another model are named as such, rather than
        # by PyTorch's list of mismatched shapes.
        artifact.check_saved_files(directory, config, skip=(artifact.ONNX_FILE,))
        # An edited config.json is named as such, where the weights record
        # the settings they were saved with. An invalid setting is quoted,
        # but not PyTorch's list of mismatched shapes.
        invalid = isinstance(err, (ValueError, KeyError))
        artifact.check_model_settings(directory, config, str(err) if invalid else None)
        raise artifact.ArtifactError(
            f"{directory / artifact.WEIGHTS_FILE} does not match "
            f"{directory / artifact.CONFIG_FILE}: {err}"
        ) from err
    artifact.check_model_settings(directory, config)
    return backend


def _load_onnx_backend(
    directory: Path, config: artifact.ArtifactConfig, threads: int | None
) -> OnnxBackend:
    backend = OnnxBackend(directory / artifact.ONNX_FILE, threads=threads)
    # After ONNX Runtime, which names a corrupt model.onnx more exactly, and
    # before the metadata, which would blame model.onnx for changed weights.
    artifact.check_saved_files(directory, config)
    _check_onnx_metadata(directory, backend, config)
    return backend


def _check_onnx_metadata(
    directory: Path, backend: OnnxBackend, config: artifact.ArtifactConfig
) -> None:
    """Reject a model.onnx exported from another model or another format."""
    onnx_path = backend.path
    metadata = backend.metadata
    fix = f"{_EXPORT_HINT.format(directory=directory)} again"
    version = metadata.get(METADATA_FORMAT_VERSION)
    if version != str(config.format_version):
        raise artifact.ArtifactError(
            f"{onnx_path} has artifact format version {version!r}, but "
            f"{directory / artifact.CONFIG_FILE} has {config.format_version}; {fix}"
        )
    try:
        labels = tuple(json.loads(metadata.get(METADATA_LABELS, "null")))
    except (TypeError, ValueError):
        labels = None
    if labels != config.labels:
        raise artifact.ArtifactError(
            f"{onnx_path} has labels {metadata.get(METADATA_LABELS)!r}, but "
            f"{directory / artifact.CONFIG_FILE} has {list(config.labels)}; {fix}"
        )
    # An ONNX-only deployment may leave the weights out; when they are present
    # they must be the ones that were exported.
    weights_path = directory / artifact.WEIGHTS_FILE
    expected_sha256 = metadata.get(METADATA_WEIGHTS_SHA256)
    if weights_path.is_file() and expected_sha256 != file_sha256(weights_path):
        raise artifact.ArtifactError(
            f"{onnx_path} was exported from other weights than {weights_path}; {fix}"
        )
    # Exports of earlier versions lack these two keys and are not checked.
    expected_sha256 = metadata.get(METADATA_MODEL_SHA256)
    if expected_sha256 is not None and expected_sha256 != model_config_sha256(config):
        if weights_path.is_file():
            # Where the weights also disagree, config.json is the changed file.
            artifact.check_model_settings(directory, config)
        raise artifact.ArtifactError(
            f"{onnx_path} was exported from a network with other settings than "
            f"those in {directory / artifact.CONFIG_FILE}, so it belongs to "
            f"another model; copy the whole model folder again, or {fix}"
        )
    expected_sha256 = metadata.get(METADATA_ENCODER_SHA256)
    if expected_sha256 is not None and expected_sha256 != encoder_sha256(directory):
        raise artifact.ArtifactError(
            f"{onnx_path} was exported with another tokenizer than the one in "
            f"{directory}, so it belongs to another model; copy the whole model "
            f"folder again, or {fix}"
        )


def _onnxruntime_errors(onnxruntime: Any) -> tuple[type[BaseException], ...]:
    """Return the exception types that onnxruntime raises on a bad model file."""
    state = onnxruntime.capi.onnxruntime_pybind11_state
    errors: list[type[BaseException]] = [OSError]
    for name in dir(state):
        value = getattr(state, name)
        if isinstance(value, type) and issubclass(value, Exception):
            errors.append(value)
    return tuple(errors)


def _batch_stop(
    sorted_lengths: np.ndarray, start: int, batch_size: int, max_batch_tokens: int
) -> int:
    """Return the end of the batch that starts at ``start`` in ascending lengths.

    The padded size of ``sorted_lengths[start:stop]`` is
    ``sorted_lengths[stop - 1] * (stop - start)``, which grows with ``stop``,
    so the batch ends before the first row that would exceed the token budget.
    """
    widths = sorted_lengths[start : start + batch_size]
    padded_tokens = widths * np.arange(1, len(widths) + 1)
    fitting = int(np.searchsorted(padded_tokens, max_batch_tokens, side="right"))
    return start + max(fitting, 1)

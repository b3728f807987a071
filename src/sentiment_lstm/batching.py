"""Length-bucketed batches of token ids, shared by training and inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Batches are cut from pools of this many batches sorted by length: reviews of
# similar length share a batch, so little time goes to padding, while the pool
# keeps the batch order random.
POOL_BATCHES = 50


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffle indices into batches of reviews of similar length.

    Args:
        lengths: Token count of each review.
        batch_size: Reviews per batch; the last batch of a pool may be smaller.
        rng: Source of randomness, so a seed fixes the batch order.

    Returns:
        Arrays of indices into ``lengths``, one per batch, in random order.
    """
    order = rng.permutation(len(lengths))
    lengths_array = np.asarray(lengths)
    pool_size = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(order), pool_size):
        pool = order[start : start + pool_size]
        pool = pool[np.argsort(lengths_array[pool], kind="stable")]
        batches.extend(
            pool[offset : offset + batch_size]
            for offset in range(0, len(pool), batch_size)
        )
    batch_order = rng.permutation(len(batches))
    return [batches[i] for i in batch_order]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Split indices into batches sorted by length, for inference.

    Args:
        lengths: Token count of each review.
        batch_size: Reviews per batch.

    Returns:
        Arrays of indices into ``lengths``, shortest reviews first.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(
    token_ids: Sequence[Sequence[int]], indices: np.ndarray, pad_index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad the chosen reviews into one array.

    Args:
        token_ids: Token ids of every review.
        indices: Which reviews form the batch.
        pad_index: Id written after each review's last token.

    Returns:
        ``(ids, lengths)``: int64 arrays of shape (batch, max_length) and
        (batch,). A review with no tokens gets length 0 and one pad token.
    """
    lengths = np.fromiter(
        (len(token_ids[i]) for i in indices), dtype=np.int64, count=len(indices)
    )
    width = max(int(lengths.max(initial=0)), 1)
    ids = np.full((len(indices), width), pad_index, dtype=np.int64)
    for row, index in enumerate(indices):
        review = token_ids[index]
        ids[row, : len(review)] = review
    return ids, lengths

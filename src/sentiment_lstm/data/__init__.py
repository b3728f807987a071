"""Reading labelled reviews: file formats, named data sets and splitting.

Readers turn pos/neg files, CSV, TSV and JSONL files and folders of review files
into ``Example`` records with label 0 (negative) or 1 (positive). Bad rows are
reported with file and line, or left out and counted with ``skip_bad_rows``.
"""

from sentiment_lstm.data.datasets import (
    RT_POLARITY_URL,
    fetch_rt_polarity,
    resolve_data,
)
from sentiment_lstm.data.fingerprint import data_fingerprint
from sentiment_lstm.data.readers import read_examples, read_texts
from sentiment_lstm.data.records import (
    LABEL_NAMES,
    BadRow,
    DataError,
    Example,
    ReadOptions,
    ReadResult,
    StarRule,
)
from sentiment_lstm.data.split import split_examples

__all__ = [
    "LABEL_NAMES",
    "RT_POLARITY_URL",
    "BadRow",
    "DataError",
    "Example",
    "ReadOptions",
    "ReadResult",
    "StarRule",
    "data_fingerprint",
    "fetch_rt_polarity",
    "read_examples",
    "read_texts",
    "resolve_data",
    "split_examples",
]

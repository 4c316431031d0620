"""Data loading: text files, token-budget batching and the translation datamodule."""

from s2s.data.batching import TokenBatchSampler
from s2s.data.translation import (
    Example,
    TranslationBatch,
    TranslationData,
    TranslationDataset,
    collate,
    encode_sources,
    make_batches,
)
from s2s.io import DataError, read_lines, read_parallel

__all__ = [
    "DataError",
    "Example",
    "TokenBatchSampler",
    "TranslationBatch",
    "TranslationData",
    "TranslationDataset",
    "collate",
    "encode_sources",
    "make_batches",
    "read_lines",
    "read_parallel",
]

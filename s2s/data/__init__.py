"""Data loading: text files, token-budget batching, the translation and caption datamodules,
text streams for language models and labelled text for classifiers and taggers."""

from s2s.data.batching import TokenBatchSampler
from s2s.data.captions import (
    CaptionData,
    CocoCaptions,
    Flickr8kCaptions,
    KarpathySplit,
    TsvCaptions,
)
from s2s.data.labelled import ClassificationData, TaggingData
from s2s.data.text_stream import TextStreamData
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
    "CaptionData",
    "ClassificationData",
    "CocoCaptions",
    "DataError",
    "Example",
    "Flickr8kCaptions",
    "KarpathySplit",
    "TaggingData",
    "TextStreamData",
    "TokenBatchSampler",
    "TranslationBatch",
    "TranslationData",
    "TranslationDataset",
    "TsvCaptions",
    "collate",
    "encode_sources",
    "make_batches",
    "read_lines",
    "read_parallel",
]

from s2s.models.captioner import Captioner
from s2s.models.classifier import SequenceClassifier
from s2s.models.encoder_decoder import EncoderDecoderModule
from s2s.models.language_model import LanguageModel
from s2s.models.seq2seq import Seq2Seq
from s2s.models.tagger import SequenceTagger

__all__ = [
    "Captioner",
    "EncoderDecoderModule",
    "LanguageModel",
    "Seq2Seq",
    "SequenceClassifier",
    "SequenceTagger",
]

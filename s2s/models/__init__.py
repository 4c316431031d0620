from s2s.models.encoder_decoder import EncoderDecoderModule
from s2s.models.seq2seq import Seq2Seq

__all__ = ["EncoderDecoderModule", "Seq2Seq"]

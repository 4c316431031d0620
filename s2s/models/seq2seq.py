"""The RNN encoder-decoder translator.

Sutskever, Vinyals & Le (2014) and Cho et al. (2014) without attention; Bahdanau et al. (2015)
and Luong et al. (2015) with it.
"""

from __future__ import annotations

import logging

from s2s.coco_caption import meteor
from s2s.decoding import SearchConfig
from s2s.models.encoder_decoder import EncoderDecoderModule
from s2s.nn.decoder import DecoderConfig, RNNDecoder
from s2s.nn.encoder import EncoderConfig, EncoderOutput, RNNEncoder
from s2s.optim import OptimConfig

log = logging.getLogger(__name__)


class Seq2Seq(EncoderDecoderModule):
    """Translator: RNN encoder over source subwords, RNN decoder with optional attention.

    Args:
        src_vocab_size: Source vocabulary size (linked from the data module in recipes).
        tgt_vocab_size: Target vocabulary size (linked from the data module in recipes).
        encoder: The RNN encoder's options.
        decoder: The RNN decoder's options; its ``attention: none`` conditions every step on the
            encoder's final state (one fixed context vector), the others attend over all source
            positions at every step.
        label_smoothing: Label smoothing of the training loss (Szegedy et al., 2016).
        teacher_forcing_ratio: Probability of feeding the reference token while training; below 1,
            the model's own prediction is fed otherwise (Bengio et al., 2015).
        optim: Optimiser and learning-rate schedule.
        search: Decoding for test and the translate script; validation decodes greedily with its
            length limits.
        init_from: An s2s checkpoint to fine-tune: runs start from its weights (``--ckpt_path``,
            when given, replaces them), and the data is tokenized with its tokenizers (the CLI
            links this to ``data.tokenizer_from``). The architecture options must be its own.
    """

    tokenizer_names = ("src", "tgt")

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        encoder: EncoderConfig = EncoderConfig(),
        decoder: DecoderConfig = DecoderConfig(),
        label_smoothing: float = 0.1,
        teacher_forcing_ratio: float = 1.0,
        optim: OptimConfig = OptimConfig(),
        search: SearchConfig = SearchConfig(),
        init_from: str | None = None,
    ) -> None:
        super().__init__(label_smoothing, teacher_forcing_ratio, optim, search, init_from)
        self.save_hyperparameters()
        self.encoder = RNNEncoder(src_vocab_size, encoder)
        self.decoder = RNNDecoder(tgt_vocab_size, self.encoder.output_size, decoder)

    def encode(self, batch) -> EncoderOutput:
        return self.encoder(batch.src, batch.src_lengths)

    def extra_scores(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
        """At test, METEOR 1.5 where the target is English and Java is installed, on the
        detokenized text (METEOR's ``-norm`` lowercases and tokenizes it).
        Other targets need METEOR's paraphrase table of their language, which pycocoevalcap does
        not ship."""
        if self._trainer is None or not self.trainer.testing:
            return {}
        lang = getattr(self.trainer.datamodule, "tgt_lang", None)  # data modules without one: None
        if lang != "en":
            log.warning("METEOR is computed for English targets only (target: %s)", lang)
            return {}
        score = meteor(hyps, refs, tokenize=str)
        return {} if score is None else {"meteor": score}

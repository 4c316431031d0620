"""Corpus-level text metrics (sacreBLEU's BLEU and chrF), shared by every generating model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

from sacrebleu.metrics import BLEU, CHRF


@dataclass(frozen=True)
class CorpusScores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def __str__(self) -> str:
        return (
            f"BLEU = {self.bleu:.2f} ({self.bleu_signature})\n"
            f"chrF = {self.chrf:.2f} ({self.chrf_signature})"
        )


def corpus_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> CorpusScores:
    """Cased BLEU (13a tokenization) and chrF of detokenized ``hyps`` against ``refs``.

    ``refs[i]`` holds every reference of ``hyps[i]``; items may have different numbers of them.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    streams = [list(s) for s in zip_longest(*refs)]  # None pads items with fewer references
    bleu, chrf = BLEU(), CHRF()
    return CorpusScores(
        bleu=bleu.corpus_score(list(hyps), streams).score,
        chrf=chrf.corpus_score(list(hyps), streams).score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
    )

"""Corpus-level text metrics (sacreBLEU's BLEU and chrF, BLEU-1..4, exact match), shared by every
generating model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

from sacrebleu.metrics import BLEU, CHRF


@dataclass(frozen=True)
class CorpusScores:
    bleu: float
    chrf: float
    bleu_lc_tok: float
    bleu_signature: str
    chrf_signature: str
    bleu_lc_tok_signature: str

    def __str__(self) -> str:
        return (
            f"BLEU = {self.bleu:.2f} ({self.bleu_signature})\n"
            f"chrF = {self.chrf:.2f} ({self.chrf_signature})\n"
            f"BLEU lowercased = {self.bleu_lc_tok:.2f} ({self.bleu_lc_tok_signature})"
        )


def corpus_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> CorpusScores:
    """Cased BLEU (13a tokenization) and chrF of detokenized ``hyps`` against ``refs``, and the
    lowercased tokenized BLEU that Multi30k papers report (Moses tokenizer + multi-bleu).

    ``refs[i]`` holds every reference of ``hyps[i]``; items may have different numbers of them.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    streams = [list(s) for s in zip_longest(*refs)]  # None pads items with fewer references
    # 13a is the sacreBLEU tokenizer closest to Moses' default (no -a): both split punctuation
    # but keep hyphens inside words ("T-Shirt", frequent in Multi30k), which 'intl' splits.
    bleu, chrf, bleu_lc = BLEU(), CHRF(), BLEU(lowercase=True, tokenize="13a")
    return CorpusScores(
        bleu=bleu.corpus_score(list(hyps), streams).score,
        chrf=chrf.corpus_score(list(hyps), streams).score,
        bleu_lc_tok=bleu_lc.corpus_score(list(hyps), streams).score,
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        bleu_lc_tok_signature=str(bleu_lc.get_signature()),
    )


def bleu_n(hyps: Sequence[str], refs: Sequence[Sequence[str]], max_order: int = 4) -> list[float]:
    """BLEU-1 .. BLEU-``max_order`` (sacreBLEU, cased, 13a), as captioning papers report them.

    BLEU-n is the geometric mean of the 1..n-gram precisions times the brevity penalty.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    streams = [list(s) for s in zip_longest(*refs)]
    return [
        BLEU(max_ngram_order=n).corpus_score(list(hyps), streams).score
        for n in range(1, max_order + 1)
    ]


def exact_match(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Percentage of hypotheses equal to one of their references (after whitespace cleanup)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    hits = sum(
        " ".join(h.split()) in {" ".join(r.split()) for r in rs}
        for h, rs in zip(hyps, refs, strict=True)
    )
    return 100.0 * hits / max(len(hyps), 1)

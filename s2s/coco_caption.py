"""The COCO caption evaluation protocol, the numbers captioning papers report.

Captions are lowercased and PTB-tokenized with punctuation removed (:func:`ptb_tokenize`), then
scored by pycocoevalcap's pure-Python scorers: BLEU-1..4 with the closest reference length,
ROUGE-L and CIDEr-D. pycocoevalcap names its CIDEr-D scorer ``Cider``: it clips the hypothesis
counts and applies the Gaussian length penalty (sigma 6), which is what defines CIDEr-D. METEOR
runs pycocoevalcap's METEOR 1.5 jar where Java is installed (:func:`meteor`); SPICE is left out.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.cider.cider_scorer import precook
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

log = logging.getLogger(__name__)

# Brackets and double quotes: the Java tokenizer rewrites them as -LRB- ... and `` '' (removed).
_DROPPED = frozenset(PUNCTUATIONS) | set('()[]{}"')
_CLITIC = re.compile(r"(?<=[^\W_])(n't|'(?:s|re|ve|ll|d|m))\b")
_N, _SIGMA = 4, 6.0  # CIDEr-D's n-gram orders and length-penalty width
_TOKEN = re.compile(r"'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,]\d+)+|[^\W_]+(?:[-'&/.][^\W_]+)*|\S")


def ptb_tokenize(text: str) -> str:
    """``text`` lowercased, PTB-tokenized, without the punctuation the COCO evaluation removes.

    A Python stand-in for pycocoevalcap's ``PTBTokenizer``, which runs Stanford's Java tokenizer:
    like it, clitics are split off ("don't" -> "do n't", "dog's" -> "dog 's"), words keep inner
    hyphens, apostrophes, slashes and ampersands, numbers keep their inner commas and periods, and
    other symbols become tokens of their own ("$5" -> "$ 5"). It differs in having no abbreviation
    list ("st." and "u.s." lose their final period, which Java keeps), in dropping brackets and
    quotes outright (Java rewrites them as -LRB-, `` and the like) and in following only the PTB
    rules above (no Unicode normalisation, no special cases such as "cannot" -> "can not").
    """
    spaced = _CLITIC.sub(r" \1", text.lower())
    return " ".join(t for t in _TOKEN.findall(spaced) if t not in _DROPPED)


def coco_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr-D of ``hyps[i]`` against ``refs[i]``, x100 as papers print
    them, under the names ``coco_bleu1..4``, ``rouge_l`` and ``cider_d``."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    names = [f"coco_bleu{n}" for n in range(1, 5)] + ["rouge_l", "cider_d"]
    if not hyps:
        return dict.fromkeys(names, 0.0)
    gts = {i: [ptb_tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [ptb_tokenize(h)] for i, h in enumerate(hyps)}
    bleus, _ = Bleu(4).compute_score(gts, res, verbose=0)  # verbose=0: no "ratio" print
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    return {name: 100.0 * float(s) for name, s in zip(names, [*bleus, rouge, cider], strict=True)}


class CiderD:
    """CIDEr-D of captions against their references, with the document frequencies of a fixed
    corpus of reference sets (one per image), as self-critical training uses it (the training
    captions): a caption's reward then does not depend on which images share its batch.

    pycocoevalcap's scorer takes the frequencies from the set it scores and has no way to fix
    them, hence this copy of its formula (tf-idf vectors of 1..4-grams, hypothesis weights clipped
    to the reference's, Gaussian length penalty of sigma 6 on the bigram counts, x10); with the
    scored references as the corpus it gives pycocoevalcap's scores (tests/test_coco_caption.py).
    """

    def __init__(self, corpus: Sequence[Sequence[str]]) -> None:
        if not corpus:
            raise ValueError("CIDEr-D needs a non-empty corpus of reference sets")
        self.document_frequency: Counter[tuple[str, ...]] = Counter()
        for refs in corpus:
            self.document_frequency.update({g for r in refs for g in precook(ptb_tokenize(r))})
        self.log_corpus_size = math.log(len(corpus))

    def __call__(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> list[float]:
        """CIDEr-D of each ``hyps[i]`` against ``refs[i]`` (pycocoevalcap's scale, not x100),
        all after :func:`ptb_tokenize`."""
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
        return [
            self._score(self._vector(hyp), [self._vector(r) for r in rs])
            for hyp, rs in zip(hyps, refs, strict=True)
        ]

    def _vector(self, text: str) -> tuple[list[dict[tuple[str, ...], float]], list[float], int]:
        """Per n, the tf-idf weight of each n-gram and the vector's norm; and the bigram count
        (pycocoevalcap's "length")."""
        counts = precook(ptb_tokenize(text), _N)
        weights: list[dict[tuple[str, ...], float]] = [{} for _ in range(_N)]
        for gram, tf in counts.items():
            df = self.document_frequency.get(gram, 0)
            weights[len(gram) - 1][gram] = tf * (self.log_corpus_size - math.log(max(1.0, df)))
        norms = [math.sqrt(sum(w * w for w in ws.values())) for ws in weights]
        return weights, norms, sum(tf for gram, tf in counts.items() if len(gram) == 2)

    @staticmethod
    def _score(hyp: tuple, refs: list[tuple]) -> float:
        (h, h_norms, h_len), total = hyp, 0.0
        for r, r_norms, r_len in refs:
            penalty = math.exp(-((h_len - r_len) ** 2) / (2 * _SIGMA**2))
            for n in range(_N):
                val = sum(min(w, r[n].get(g, 0.0)) * r[n].get(g, 0.0) for g, w in h[n].items())
                if h_norms[n] and r_norms[n]:
                    val /= h_norms[n] * r_norms[n]
                total += val * penalty
        return 10.0 * total / _N / len(refs)


def meteor(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    tokenize: Callable[[str], str] = ptb_tokenize,
) -> float | None:
    """METEOR 1.5 (x100, English, ``-norm``) of ``hyps`` against ``refs`` after ``tokenize``, by
    the jar that pycocoevalcap ships; None where Java is missing (said once per process)."""
    if shutil.which("java") is None:
        _no_java()
        return None
    gts = {i: [tokenize(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [tokenize(h)] for i, h in enumerate(hyps)}
    scorer = Meteor()  # a Java process, ended here rather than whenever Python collects it
    try:
        score, _ = scorer.compute_score(gts, res)
    finally:
        scorer.meteor_p.stdin.close()
        scorer.meteor_p.wait()
    return 100.0 * score


@functools.cache
def _no_java() -> None:
    log.warning("METEOR needs Java (e.g. apt-get install default-jre-headless); not computed")

"""CIDEr-D, the consensus-based caption metric of the COCO caption evaluation.

Vedantam, Zitnick & Parikh (2015), "CIDEr: Consensus-based Image Description Evaluation". This
follows the reference implementation (``pycocoevalcap/cider/cider_scorer.py``): n-grams of 1-4
words weighted by tf-idf, where the document frequency of an n-gram is the number of images whose
references contain it; per n, the cosine similarity to each reference with the hypothesis counts
clipped by the reference's, times a Gaussian penalty on the length difference (sigma 6); the mean
over n and over the references, times 10. The corpus score is the mean over images. Like the
reference, the length compared is the number of bigrams, and an n-gram order where either vector
is empty contributes 0. Text is lowercased and split into words without punctuation, approximating
the PTB tokenizer the COCO evaluation runs first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")  # letters/digits, with an inner apostrophe (don't)


def ngrams(text: str, max_n: int = 4) -> Counter[tuple[str, ...]]:
    """Counts of the 1..max_n-grams of the lowercased words of ``text``."""
    words = _WORD.findall(text.lower())
    return Counter(
        tuple(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1)
    )


def cider_d(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], *, max_n: int = 4, sigma: float = 6.0
) -> float:
    """Corpus CIDEr-D of ``hyps[i]`` against the references ``refs[i]`` (as reported: x10 scale)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        return 0.0
    ref_counts = [[ngrams(r, max_n) for r in rs] for rs in refs]
    doc_freq: Counter[tuple[str, ...]] = Counter()
    for counts in ref_counts:
        doc_freq.update(set().union(*counts))
    log_images = math.log(len(hyps))

    def vectorize(counts: Counter) -> tuple[list[dict], list[float], int]:
        """Per order n: tf-idf weights of the n-grams and their norm; and the bigram count."""
        vec: list[dict] = [{} for _ in range(max_n)]
        for gram, tf in counts.items():
            vec[len(gram) - 1][gram] = tf * (log_images - math.log(max(1.0, doc_freq[gram])))
        norms = [math.sqrt(sum(w * w for w in v.values())) for v in vec]
        return vec, norms, sum(counts[g] for g in vec[1]) if max_n > 1 else 0

    total = 0.0
    for hyp, counts in zip(hyps, ref_counts, strict=True):
        h_vec, h_norm, h_len = vectorize(ngrams(hyp, max_n))
        score = 0.0
        for ref in counts:
            r_vec, r_norm, r_len = vectorize(ref)
            penalty = math.exp(-((h_len - r_len) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                if h_norm[n] and r_norm[n]:
                    dot = sum(
                        min(w, r_vec[n].get(g, 0.0)) * r_vec[n].get(g, 0.0)
                        for g, w in h_vec[n].items()
                    )
                    score += penalty * dot / (h_norm[n] * r_norm[n])
        total += 10.0 * score / max_n / max(len(counts), 1)
    return total / len(hyps)

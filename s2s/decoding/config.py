"""Decoding options: small frozen dataclasses that validate themselves.

They are plain typed fields with defaults, so a model can take one as a LightningCLI init argument
(``decoding: SearchConfig = SearchConfig()``) and a recipe can set its fields in YAML.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, kw_only=True)
class Constraints:
    """What every decoder obeys, whatever picks the tokens.

    Attributes:
        max_len_a: Output length limit per source position.
        max_len_b: Output length limit, absolute part: at most ``max_len_a * source_length +
            max_len_b`` tokens are generated (EOS not counted), then EOS is forced.
        min_len: EOS is forbidden before this many tokens (the length limit wins if smaller).
        no_repeat_ngram_size: Never repeat an n-gram of this size in an output (0: allow).
    """

    max_len_a: float = 0.0
    max_len_b: int = 100
    min_len: int = 0
    no_repeat_ngram_size: int = 0

    def __post_init__(self) -> None:
        _check(self.max_len_a >= 0, f"max_len_a must be >= 0, got {self.max_len_a}")
        _check(self.max_len_b >= 0, f"max_len_b must be >= 0, got {self.max_len_b}")
        _check(self.min_len >= 0, f"min_len must be >= 0, got {self.min_len}")
        _check(
            self.max_len_a > 0 or self.min_len <= self.max_len_b,
            f"min_len={self.min_len} exceeds the fixed length limit max_len_b={self.max_len_b}",
        )
        _check(
            self.no_repeat_ngram_size >= 0,
            f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}",
        )


@dataclass(frozen=True, kw_only=True)
class SearchConfig(Constraints):
    """Beam search options (Constraints' fields as well).

    Attributes:
        beam_size: Hypotheses kept per input at every step; 1 equals greedy decoding when both
            penalties are 0.
        n_best: Hypotheses returned per input, best first (at most ``beam_size``).
        length_penalty: GNMT alpha (Wu et al., 2016): ranking uses ``log_prob / ((5 + len) / 6) **
            alpha``, ``len`` counting EOS. Larger alpha favours longer outputs; 0 ranks by raw
            log-probability.
        coverage_penalty: GNMT beta: adds ``beta * sum_j log(min(sum_t a_tj, 1))`` over the source
            positions j, penalising outputs that leave source positions unattended. Needs a model
            that returns attention; 0 disables it.
    """

    beam_size: int = 5
    n_best: int = 1
    length_penalty: float = 0.0
    coverage_penalty: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.beam_size >= 1, f"beam_size must be >= 1, got {self.beam_size}")
        _check(
            1 <= self.n_best <= self.beam_size,
            f"n_best must be in [1, beam_size={self.beam_size}], got {self.n_best}",
        )
        _check(self.length_penalty >= 0, f"length_penalty must be >= 0, got {self.length_penalty}")
        _check(
            self.coverage_penalty >= 0,
            f"coverage_penalty must be >= 0, got {self.coverage_penalty}",
        )


@dataclass(frozen=True, kw_only=True)
class SamplingConfig(Constraints):
    """Ancestral sampling options (Constraints' fields as well).

    Attributes:
        temperature: Divides the log-probabilities before sampling: < 1 sharpens, > 1 flattens.
        top_k: Sample only among the k most probable tokens (0: all).
        top_p: Nucleus sampling (Holtzman et al., 2020): sample only among the most probable tokens
            whose total probability reaches top_p (1: all).
        seed: Seeds a generator private to each call, so the same call gives the same samples
            whatever the global random state.
        num_samples: Outputs sampled per input, each drawn independently.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    num_samples: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(self.num_samples >= 1, f"num_samples must be >= 1, got {self.num_samples}")


# Checkpoint hyperparameters hold these configs; torch.load(weights_only=True) may read them.
torch.serialization.add_safe_globals([Constraints, SearchConfig, SamplingConfig])

"""Decoding options validate themselves and parse as LightningCLI init arguments."""

from __future__ import annotations

import dataclasses

import pytest
from jsonargparse import ArgumentParser

from s2s.decoding import SamplingConfig, SearchConfig, greedy


@pytest.mark.parametrize(
    ("config", "options", "message"),
    [
        (SearchConfig, {"beam_size": 0}, "beam_size must be >= 1"),
        (SearchConfig, {"beam_size": 2, "n_best": 3}, r"n_best must be in \[1, beam_size=2\]"),
        (SearchConfig, {"n_best": 0}, "n_best must be in"),
        (SearchConfig, {"length_penalty": -0.5}, "length_penalty must be >= 0"),
        (SearchConfig, {"coverage_penalty": -0.1}, "coverage_penalty must be >= 0"),
        (SearchConfig, {"max_len_a": -1.0}, "max_len_a must be >= 0"),
        (SearchConfig, {"max_len_b": -1}, "max_len_b must be >= 0"),
        (SearchConfig, {"min_len": -1}, "min_len must be >= 0"),
        (SearchConfig, {"min_len": 5, "max_len_b": 4}, "min_len=5 exceeds"),
        (SearchConfig, {"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be >= 0"),
        (SamplingConfig, {"temperature": 0.0}, "temperature must be > 0"),
        (SamplingConfig, {"top_k": -1}, "top_k must be >= 0"),
        (SamplingConfig, {"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        (SamplingConfig, {"top_p": 1.5}, "top_p must be in"),
        (SamplingConfig, {"num_samples": 0}, "num_samples must be >= 1, got 0"),
        (SamplingConfig, {"max_len_b": -1}, "max_len_b must be >= 0"),
    ],
)
def test_invalid_options_raise(config, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        config(**options)


def test_greedy_validates_its_options(scripted) -> None:
    with pytest.raises(ValueError, match="min_len must be >= 0"):
        greedy(scripted(), [{}], min_len=-1)


def test_options_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        SearchConfig(5)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SearchConfig().beam_size = 3  # type: ignore[misc]


class _Model:
    def __init__(self, decoding: SearchConfig | SamplingConfig) -> None:
        self.decoding = decoding


def test_options_parse_as_init_arguments() -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(_Model, "model")

    def parse(decoding: dict) -> SearchConfig | SamplingConfig:
        return parser.instantiate(parser.parse_object({"model": {"decoding": decoding}})).model

    assert parse({"beam_size": 3, "length_penalty": 0.6}).decoding == SearchConfig(
        beam_size=3, length_penalty=0.6
    )
    sampling = {"class_path": "s2s.decoding.SamplingConfig", "init_args": {"top_p": 0.9}}
    assert parse(sampling).decoding == SamplingConfig(top_p=0.9)
    with pytest.raises(Exception, match="beam_size must be >= 1"):
        parse({"beam_size": 0})

"""Self-critical sequence training (Rennie et al., 2017): optimise a captioner's CIDEr-D directly.

For each image, ``num_samples`` captions are sampled from the model; each sample's reward is its
CIDEr-D against the image's references (with the training captions' document frequencies, as
the public self-critical.pytorch code has it, so that a reward does not depend on the batch),
minus a baseline: the CIDEr-D of the model's own greedy caption (Rennie et al.), or the mean
reward of the image's other samples (Luo, 2020, "A Better Variant of Self-Critical Sequence
Training"). REINFORCE then raises the log-probability of the samples that beat the baseline and
lowers that of the others. Sampling and greedy decoding are the
shared ``s2s.decoding`` ones; the samples' log-probabilities are recomputed with gradients by one
teacher-forced pass, each image encoded once for all its samples.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from s2s.coco_caption import CiderD
from s2s.data.batching import pad
from s2s.decoding import SamplingConfig, greedy, sample
from s2s.decoding.interface import Layout
from s2s.tokenizer import BOS_ID, EOS_ID, PAD_ID

Baseline = Literal["greedy", "mean"]


def self_critical_loss(
    model: Any, batch: Any, num_samples: int, baseline: Baseline, max_len: int, cider: CiderD
) -> tuple[Tensor, Tensor]:
    """The REINFORCE loss of one batch of images with its references, and the samples' mean
    reward (``cider``: CIDEr-D with the training corpus's document frequencies). ``model`` is a
    captioner: ``tokenizers``, the step interface, ``forward``.

    The model should be in eval mode (no dropout), so that the log-probabilities trained are those
    of the policy that sampled.
    """
    seed = int(torch.randint(2**31 - 1, ()))  # from the global generator: resumable, seeded runs
    config = SamplingConfig(max_len_b=max_len, num_samples=num_samples, seed=seed)
    samples = sample(model, batch, config)
    tok = model.tokenizers["tgt"]
    refs = [r for r in batch.refs for _ in range(num_samples)]
    texts = [tok.decode(h.tokens) for h in samples]
    if baseline == "greedy":
        greedy_texts = [tok.decode(h.tokens) for h in greedy(model, batch, max_len_b=max_len)]
        scores = cider(texts + greedy_texts, refs + list(batch.refs))
        rewards = torch.tensor(scores[: len(texts)])
        base = torch.tensor(scores[len(texts) :]).repeat_interleave(num_samples)
    else:
        rewards = torch.tensor(cider(texts, refs))
        per_image = rewards.view(-1, num_samples)
        base = ((per_image.sum(1, keepdim=True) - per_image) / (num_samples - 1)).flatten()
    advantage = (rewards - base).to(batch_device(batch))
    log_probs, mask = sample_log_probs(model, batch, [h.tokens for h in samples], num_samples)
    loss = -(advantage.unsqueeze(1) * log_probs * mask).sum() / mask.sum()
    return loss, rewards.mean()


def sample_log_probs(
    model: Any, batch: Any, tokens: list[list[int]], num_samples: int
) -> tuple[Tensor, Tensor]:
    """Per-token log-probabilities (N, T) of the sampled captions (EOS included) under ``model``,
    with gradients, and the mask of their real tokens. Each image is encoded once; its samples
    share its memory and attention keys (a :class:`Layout` group), as beam search's beams do."""
    device = batch_device(batch)
    enc = model.encode(batch)
    state = model.decoder.init_state(enc)
    rows = torch.arange(enc.memory.size(0), device=device).repeat_interleave(num_samples)
    state = model.reorder(state, rows, Layout(num_samples))
    tgt = pad([[BOS_ID, *t, EOS_ID] for t in tokens]).to(device)
    logits, _ = model.decoder.forward_with_attention(tgt[:, :-1], state)
    target = tgt[:, 1:]
    picked = F.log_softmax(logits.float(), -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return picked, (target != PAD_ID).float()


def batch_device(batch: Any) -> torch.device:
    return (batch.images if batch.images is not None else batch.features).device

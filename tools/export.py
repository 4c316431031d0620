"""Export a translator checkpoint to TorchScript: its encoder and one decoder step, to run without
s2s (libtorch in C++, or ``torch.jit.load`` in Python).

    python tools/export.py runs/X/checkpoints/best.ckpt --output exported/

writes to the output folder

    encoder.pt       (src (B, S) int64: ids, EOS, PAD padding; src_lengths (B,) int64) -> state
    decoder_step.pt  (tokens (N,) int64, *state) -> (log_probs (N, V), h, c, feed, attention (N, S))
    src.model, tgt.model  the SentencePiece tokenizers (ids PAD 0, UNK 1, BOS 2, EOS 3)

where ``state`` is ``(h, c, feed, memory, keys, mask)``: the RNN state ``h`` and ``c`` (layers,
N, H; ``c`` is unused but for LSTMs), the previous attentional vector ``feed`` (N, H), the encoder
memory (N, S, Hm), its attention keys (N, S, K) and the source mask (N, S). To decode, encode once
and step from BOS, passing back the new ``h, c, feed``; beam search picks rows of the state with
``index_select`` (dim 1 for ``h`` and ``c``, dim 0 for the rest). :class:`ExportedTranslator`
does exactly that for :mod:`s2s.decoding`.

TorchScript tracing, not ``torch.export``: the latter cannot capture the encoder's packed
sequences, whose shapes depend on the data. A trace records one path through the Python code; the
model's only branches are its cell type and attention, fixed at export, so the trace serves every
batch size and source length (the test checks shapes other than the tracing example's).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from s2s.checkpoint import load_model
from s2s.decoding.interface import Layout, Step
from s2s.models import Seq2Seq
from s2s.nn.decoder import DecoderState, RNNDecoder
from s2s.nn.encoder import RNNEncoder
from s2s.tokenizer import EOS_ID, PAD_ID, Tokenizer

State = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]  # h, c, feed, memory, keys, mask


class ScriptEncoder(nn.Module):
    """The translator's encoding and initial decoder state, as plain tensors."""

    def __init__(self, encoder: RNNEncoder, decoder: RNNDecoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, src: Tensor, src_lengths: Tensor) -> State:
        state = self.decoder.init_state(self.encoder(src, src_lengths))
        h = state.hidden[0] if isinstance(state.hidden, tuple) else state.hidden
        c = state.hidden[1] if isinstance(state.hidden, tuple) else torch.zeros_like(h)
        keys = state.memory if state.keys is None else state.keys  # unused without attention
        return h, c, state.feed, state.memory, keys, state.mask


class ScriptDecoderStep(nn.Module):
    """One decoder step over plain tensors."""

    def __init__(self, decoder: RNNDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(
        self,
        tokens: Tensor,
        h: Tensor,
        c: Tensor,
        feed: Tensor,
        memory: Tensor,
        keys: Tensor,
        mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        lstm, attention = self.decoder.cell == "lstm", self.decoder.attention is not None
        log_probs, new, weights = self.decoder.step(
            tokens,
            DecoderState(
                hidden=(h, c) if lstm else h,
                feed=feed,
                memory=memory,
                keys=keys if attention else None,
                mask=mask,
            ),
        )
        h, c = new.hidden if lstm else (new.hidden, c)
        weights = mask.to(log_probs.dtype) * 0 if weights is None else weights  # (N, S)
        return log_probs, h, c, new.feed, weights


@torch.no_grad()
def export(model: Seq2Seq, folder: Path) -> None:
    """Write the TorchScript modules and the tokenizers of ``model`` to ``folder``."""
    model = model.cpu().eval()
    src = torch.tensor([[4, 5, EOS_ID], [4, EOS_ID, PAD_ID]])  # two lengths: packing traced
    lengths = torch.tensor([3, 2])
    with warnings.catch_warnings():
        # The tracer warns about Python values it bakes in; none depends on the input's shape.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        encoder = torch.jit.trace(ScriptEncoder(model.encoder, model.decoder), (src, lengths))
        state = encoder(src, lengths)
        tokens = torch.full((2,), EOS_ID)
        step = torch.jit.trace(ScriptDecoderStep(model.decoder), (tokens, *state))
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save(str(folder / "encoder.pt"))
    step.save(str(folder / "decoder_step.pt"))
    for name, tok in model.tokenizers.items():
        tok.save(folder / f"{name}.model")


class ExportedTranslator:
    """An exported folder as a :class:`~s2s.decoding.interface.StepDecoder`, with its
    tokenizers: ``greedy(ExportedTranslator(folder), batch)`` decodes like the checkpoint."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.encoder = torch.jit.load(str(folder / "encoder.pt"))
        self.decoder_step = torch.jit.load(str(folder / "decoder_step.pt"))
        self.tokenizers = {
            name: Tokenizer.load(folder / f"{name}.model") for name in ("src", "tgt")
        }

    def start(self, batch) -> tuple[State, Tensor]:
        state = self.encoder(batch.src, batch.src_lengths)
        return state, state[5].sum(1)

    def step(self, tokens: Tensor, state: State) -> Step:
        log_probs, h, c, feed, attention = self.decoder_step(tokens, *state)
        return Step(log_probs, (h, c, feed, *state[3:]), attention)

    def reorder(self, state: State, index: Tensor, layout: Layout | None = None) -> State:
        """Every row holds its own memory here, so the layout does not matter."""
        h, c, *rest = state
        return (h.index_select(1, index), c.index_select(1, index), *(t[index] for t in rest))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", help="a translator checkpoint written by `s2s fit`")
    p.add_argument("--output", type=Path, required=True, help="folder for the exported files")
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
    except ValueError as e:
        sys.exit(f"export: {e}")
    if not isinstance(model, Seq2Seq):
        sys.exit(f"export: {args.checkpoint} holds a {type(model).__name__}, not a translator")
    export(model, args.output)
    print(f"exported {args.checkpoint} -> {args.output}")


if __name__ == "__main__":
    main()

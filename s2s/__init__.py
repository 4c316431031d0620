"""s2s: RNN encoder-decoders for translation and image captioning on PyTorch Lightning."""

__version__ = "0.1.0"

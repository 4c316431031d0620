"""The image captioner: a CNN encoder over image regions and the shared RNN decoder.

Xu et al. (2015), "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention",
with ``attention: bahdanau`` (their soft attention) and the doubly stochastic attention regulariser;
with ``attention: none``, the mean image vector initialises the decoder and is its context at every
step, close to Vinyals et al. (2015), "Show and Tell".
"""

from __future__ import annotations

import json
from typing import Any

from torch import Tensor

from s2s.coco_caption import CiderD, coco_scores, meteor
from s2s.data.captions import CaptionBatch, coco_results
from s2s.data.images import Preprocessing
from s2s.decoding import SearchConfig
from s2s.metrics import bleu_n, exact_match
from s2s.models.encoder_decoder import EncoderDecoderModule, write_log_file
from s2s.models.self_critical import Baseline, self_critical_loss
from s2s.nn.decoder import DecoderConfig, RNNDecoder
from s2s.nn.encoder import EncoderOutput
from s2s.nn.image_encoder import ImageEncoder
from s2s.optim import OptimConfig, configure_optimizers


class Captioner(EncoderDecoderModule):
    """Image captioner; the checkpoint alone rebuilds it, preprocessing included.

    Args:
        tgt_vocab_size: Caption vocabulary size (linked from the data module in recipes).
        backbone: Image encoder: a torchvision classification model name (``resnet18``,
            ``mobilenet_v3_small``, ``efficientnet_b0``, ...) or a module's class path
            (``s2s.nn.image_encoder.ConvNet``, ``s2s.nn.image_encoder.EfficientNetLite0``).
        backbone_args: Keyword arguments of a class-path backbone.
        weights: Torchvision weights name (from the torch hub cache, never downloaded), a state
            dict file, or None; see :class:`~s2s.nn.image_encoder.ImageEncoder`.
        image_size: Input size when the weights define no preprocessing.
        unfreeze_encoder_at: Epoch from which the encoder trains: 0 trains it from the start, K
            keeps it frozen (no gradients, BatchNorm statistics kept) for epochs 0..K-1, None
            keeps it frozen throughout. On several devices, a frozen encoder needs
            ``trainer.strategy: ddp_find_unused_parameters_true``.
        encoder_lr: Peak learning rate of the encoder's parameters (default ``optim.lr``); a
            pretrained encoder is usually fine-tuned with a lower one.
        decoder: The RNN decoder's options: ``attention: bahdanau`` is Show-Attend-Tell's soft
            attention over image regions; ``none`` gives the decoder the mean image vector as a
            fixed context at every step.
        attention_regularization: Weight lambda of the doubly stochastic attention regulariser
            ``lambda * mean_i (1 - sum_t alpha_ti)^2`` (Xu et al. eq. 14, averaged over regions
            and captions so that lambda does not scale with the grid size): every region should
            get attention at some step. 0 disables it.
        label_smoothing: Label smoothing of the training loss.
        teacher_forcing_ratio: Probability of feeding the reference token while training.
        optim: Optimiser and learning-rate schedule.
        search: Decoding for test and ``s2s-caption`` (validation decodes greedily); length
            limits should be absolute (``max_len_a: 0``), the source length being the region count.
        init_from: A captioner checkpoint to fine-tune: the run starts from its weights and its
            tokenizer (``s2s`` links it to the data's ``tokenizer_from``), e.g. a cross-entropy
            run with a frozen encoder, continued with ``unfreeze_encoder_at: 0`` and a low
            ``encoder_lr``.
        self_critical: Train by self-critical sequence training (s2s/models/self_critical.py)
            instead of cross-entropy: usually after a cross-entropy run (``init_from``).
        scst_samples: Captions sampled per image in a self-critical step.
        scst_baseline: What a sample's CIDEr-D is compared with: the greedy caption's
            (Rennie et al., 2017) or the mean of the image's other samples (Luo, 2020).
    """

    def __init__(
        self,
        tgt_vocab_size: int,
        backbone: str = "resnet18",
        backbone_args: dict[str, Any] | None = None,
        weights: str | None = None,
        image_size: int = 224,
        unfreeze_encoder_at: int | None = 0,
        encoder_lr: float | None = None,
        decoder: DecoderConfig = DecoderConfig(hidden_size=512),
        attention_regularization: float = 1.0,
        label_smoothing: float = 0.0,
        teacher_forcing_ratio: float = 1.0,
        optim: OptimConfig = OptimConfig(),
        search: SearchConfig = SearchConfig(beam_size=3, max_len_b=30),
        init_from: str | None = None,
        self_critical: bool = False,
        scst_samples: int = 5,
        scst_baseline: Baseline = "greedy",
    ) -> None:
        super().__init__(label_smoothing, teacher_forcing_ratio, optim, search, init_from)
        self.save_hyperparameters()
        if unfreeze_encoder_at is not None and unfreeze_encoder_at < 0:
            raise ValueError(f"unfreeze_encoder_at must be >= 0 or None, got {unfreeze_encoder_at}")
        if attention_regularization < 0:
            raise ValueError(f"attention_regularization must be >= 0: {attention_regularization}")
        if scst_samples < 1 or (scst_baseline == "mean" and scst_samples < 2):
            raise ValueError(
                f"scst_samples must be >= 1 (>= 2 with the mean baseline), got {scst_samples}"
            )
        self.self_critical, self.scst_samples = self_critical, scst_samples
        self.scst_baseline: Baseline = scst_baseline
        self.cider: CiderD | None = None  # set at fit from the training captions
        self.unfreeze_encoder_at = unfreeze_encoder_at
        self.encoder_lr = encoder_lr
        self.attention_regularization = attention_regularization
        self.encoder = ImageEncoder(
            backbone, backbone_args=backbone_args, weights=weights, image_size=image_size
        )
        self.encoder.set_frozen(unfreeze_encoder_at != 0)
        self.decoder = RNNDecoder(tgt_vocab_size, self.encoder.output_size, decoder)

    @property
    def preprocessing(self) -> Preprocessing:
        """How images must be prepared for this model (the data module and the script use it)."""
        return self.encoder.preprocessing

    def encode(self, batch: CaptionBatch) -> EncoderOutput:
        features = None if batch.features is None else batch.features.to(self.dtype)
        return self.encoder(batch.images, features)

    def attention_penalty(self, attention: Tensor | None, target_mask: Tensor) -> Tensor | float:
        """Doubly stochastic attention: each region's attention summed over steps should be 1."""
        if attention is None or self.attention_regularization == 0:
            return 0.0
        coverage = (attention * target_mask.unsqueeze(-1)).sum(1)  # (B, S)
        penalty = ((1.0 - coverage) ** 2).mean()
        self.log("train/attention_penalty", penalty, batch_size=attention.size(0))
        return self.attention_regularization * penalty

    def on_train_epoch_start(self) -> None:
        at = self.unfreeze_encoder_at
        self.encoder.set_frozen(at is None or self.current_epoch < at)

    def configure_optimizers(self):
        """Two parameter groups, so the encoder can have its own (lower) learning rate. A frozen
        encoder's parameters stay in the optimiser without gradients, which leaves them alone."""
        encoder = list(self.encoder.parameters())
        ids = {id(p) for p in encoder}
        groups = [
            {"params": [p for p in self.parameters() if id(p) not in ids]},
            {
                "params": encoder,
                "lr": self.optim.lr if self.encoder_lr is None else self.encoder_lr,
            },
        ]
        return configure_optimizers(groups, self.optim)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.self_critical:
            data = getattr(self.trainer, "datamodule", None)
            if not hasattr(data, "train_references"):
                raise ValueError(
                    "self-critical training needs a captioning data module (CaptionData): its "
                    "training captions give the reward's CIDEr-D document frequencies"
                )
            self.cider = CiderD(data.train_references)

    def training_step(self, batch: CaptionBatch, batch_idx: int) -> Tensor:
        if not self.self_critical:
            return super().training_step(batch, batch_idx)
        # No dropout: the log-probabilities trained are those of the policy that sampled.
        self.eval()
        try:
            loss, reward = self_critical_loss(
                self,
                batch,
                self.scst_samples,
                self.scst_baseline,
                self.search.max_len_b,
                self.cider,
            )
        finally:
            self.train()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch.refs))
        self.log("train/reward", reward, prog_bar=True, batch_size=len(batch.refs))
        return loss

    def write_test_outputs(self, hyps: list[str]) -> None:
        """``test_results.json``: the captions in the COCO results format that evaluation servers
        read, ``[{"image_id", "caption"}]`` (see :func:`~s2s.data.captions.image_id`)."""
        examples = self.trainer.datamodule.datasets["test"].examples
        results = coco_results([ex.image for ex in examples], hyps)
        out = write_log_file(self.trainer, "test_results.json", [json.dumps(results)])
        self.print(f"COCO results: {out}")

    def extra_scores(self, hyps: list[str], refs: list[list[str]]) -> dict[str, float]:
        """Against all references of each image: sacreBLEU's BLEU-1..4, the COCO protocol's
        BLEU-1..4, ROUGE-L and CIDEr-D (the numbers papers report), exact match, and at test
        METEOR where Java is installed (it starts a Java process)."""
        testing = self._trainer is not None and self.trainer.testing
        score = meteor(hyps, refs) if testing else None
        return {
            **({} if score is None else {"meteor": score}),
            **{f"bleu{n}": b for n, b in enumerate(bleu_n(hyps, refs), start=1)},
            **coco_scores(hyps, refs),
            "exact": exact_match(hyps, refs),
        }

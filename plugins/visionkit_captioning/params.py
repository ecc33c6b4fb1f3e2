"""The ``captioning`` head's parameters (one frozen dataclass, validated in ``__post_init__``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from visionkit.captions.vocab import SPECIAL_TOKENS

__all__ = ["CaptioningParams", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CaptioningParams:
    """Config keys of the ``captioning`` head.

    Model:

    * ``attention``: true gives "Show, Attend and Tell" (Xu et al. 2015: soft attention over the
      ``L`` positions of the backbone's last feature map); false gives "Show and Tell" (Vinyals et
      al. 2015: the pooled image embedding is fed once, at t = -1, no attention).
    * ``vocabulary``: the words of the vocabulary in id order, without the four special tokens
      (``<pad> <start> <end> <unk>`` are ids 0..3). ``visionkit train`` fills it in from the
      training captions and stores it in the checkpoint's config, so ``--weights`` rebuilds the
      same model. Empty: only the special tokens (an untrained model).
    * ``embed_dim`` word embedding size; ``hidden_dim`` LSTM size; ``attention_dim`` size of the
      additive attention's hidden layer; ``dropout`` before the output layer.
    * ``gating``: the gating scalar beta = sigmoid(f_beta(h_{t-1})) on the context vector (Xu §4.2.1).
    * ``alpha_c``: weight lambda of the doubly stochastic attention regulariser
      ``lambda * sum_i (1 - sum_t alpha_ti)^2`` (Xu eq. 14); 0 turns it off.
    * ``input_size``: images are resized to ``input_size x input_size`` before the encoder.
    * ``feature_grid``: adaptive average pooling of the last feature map to ``grid x grid``
      positions (null: keep the map as the backbone gives it; Xu et al. used 14 x 14 of VGG conv5_4).
    * ``freeze_encoder``: true keeps the backbone fixed (eval mode, no gradients; its features are
      computed once per image during training); false fine-tunes it with the decoder.
    * ``image_mean``/``image_std``: per-channel normalisation applied after scaling to [0, 1]
      (ImageNet's, which torchvision's backbones expect).

    Decoding: ``max_length`` caps a generated caption at that many words (and truncates training
    captions to it); ``beam_size`` 1 is greedy decoding; ``length_normalize`` ranks finished beams
    by mean instead of summed log-probability; ``suppress_unk`` never generates ``<unk>`` (as the
    ``suppress_UNK`` default of ruotianluo/ImageCaptioning.pytorch; false lets the model say it).

    Training data (read only by ``visionkit train``): ``images`` / ``val_images`` are the folders
    that the ``file_name`` values of ``--dataset`` / ``--val-dataset`` are relative to (null: found
    next to the JSON, see :func:`visionkit_captioning.data.find_image_root`); ``min_count`` and
    ``max_vocab`` shape the vocabulary built from the training captions.
    """

    attention: bool = True
    vocabulary: list[str] = field(default_factory=list)
    embed_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256
    dropout: float = 0.5
    gating: bool = True
    alpha_c: float = 1.0
    input_size: int = 224
    feature_grid: int | None = None
    freeze_encoder: bool = False
    image_mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    image_std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    max_length: int = 20
    beam_size: int = 3
    length_normalize: bool = False
    suppress_unk: bool = True
    images: str | None = None
    val_images: str | None = None
    min_count: int = 5
    max_vocab: int | None = None

    def __post_init__(self) -> None:
        for key in ("embed_dim", "hidden_dim", "attention_dim", "max_length", "beam_size", "min_count"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.alpha_c < 0:
            raise ValueError(f"alpha_c must be >= 0, got {self.alpha_c}")
        if self.input_size < 16:
            raise ValueError(f"input_size must be >= 16 pixels, got {self.input_size}")
        if self.feature_grid is not None and self.feature_grid < 1:
            raise ValueError(f"feature_grid must be >= 1 or null, got {self.feature_grid}")
        if self.max_vocab is not None and self.max_vocab < 0:
            raise ValueError(f"max_vocab must be >= 0 or null, got {self.max_vocab}")
        for key in ("image_mean", "image_std"):
            if len(getattr(self, key)) != 3:
                raise ValueError(f"{key} must hold 3 values (R, G, B), got {list(getattr(self, key))}")
        if any(s <= 0 for s in self.image_std):
            raise ValueError(f"image_std values must be > 0, got {list(self.image_std)}")
        seen: set[str] = set()
        for word in self.vocabulary:
            if word in SPECIAL_TOKENS:
                raise ValueError(f"vocabulary must not list the special token {word!r} (ids 0-3 are implied)")
            if word in seen:
                raise ValueError(f"vocabulary lists {word!r} twice")
            if not word or any(ch.isspace() and ch != "\xa0" for ch in word):
                raise ValueError(f"vocabulary word {word!r} is empty or contains whitespace")
            seen.add(word)

"""The captioning model: a CNN encoder (any backbone plugin) and an LSTM decoder.

Two decoders, one head:

* :class:`AttentionDecoder` -- "Show, Attend and Tell" (Xu et al., ICML 2015), soft
  deterministic attention: the initial memory and hidden state are predicted from the mean
  annotation vector by two separate linear layers (§4.2.1, "MLPs"); at each step the additive
  (Bahdanau) attention ``e_ti = w^T tanh(W_a a_i + W_h h_{t-1})``, ``alpha_t = softmax(e_t)``
  weights the ``L`` annotation vectors; the context ``z_t = beta_t * sum_i alpha_ti a_i`` with the
  gating scalar ``beta_t = sigmoid(f_beta(h_{t-1}))``; the LSTM reads ``[E y_{t-1}; z_t]``; the
  deep output layer gives ``p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))`` (eq. 7), with
  dropout before ``L_o``. Departures: ``h_{t-1}``/``c_{t-1}`` of an ``nn.LSTMCell`` (the paper's
  LSTM has the same gates); ``tanh`` is not applied after the init layers.
* :class:`ShowTellDecoder` -- "Show and Tell" (Vinyals et al., CVPR 2015): the pooled image
  feature is embedded by ``W_I`` and fed to the LSTM once, at t = -1, from a zero state; then the
  words ``W_e S_t``; ``p_{t+1} = softmax(W_o h_t)`` (dropout before ``W_o``). No attention.

Loss (teacher forcing): cross-entropy of each next word given the true previous ones plus, with
attention, the doubly stochastic regulariser ``lambda * sum_i (1 - sum_t alpha_ti)^2`` (eq. 14).
The paper's per-caption objective is summed over the batch and divided by the number of target
tokens (so ``loss_xent`` is the mean per-token cross-entropy).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from visionkit.captions.vocab import Vocabulary
from visionkit.errors import UsageError

from .decode import Hypothesis, State, beam_search, greedy_search
from .params import CaptioningParams

__all__ = ["AttentionDecoder", "ShowTellDecoder", "Captioner", "to_rgb", "pad_captions"]


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """An image ``[C, H, W]`` (C = 1, 3 or 4) or ``[H, W]`` as ``[3, H, W]``: grey repeated, alpha dropped."""
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"an image must be [C, H, W] with C in (1, 3, 4) or [H, W], got shape {tuple(image.shape)}")
    if image.shape[0] == 1:
        return image.expand(3, -1, -1)
    return image[:3]


def pad_captions(captions: Sequence[Sequence[int]], pad_id: int = 0) -> torch.Tensor:
    """Token id lists -> int64 ``[B, T]`` right-padded with ``pad_id`` (T = the longest)."""
    length = max((len(c) for c in captions), default=0)
    out = torch.full((len(captions), length), pad_id, dtype=torch.long)
    for i, c in enumerate(captions):
        out[i, :len(c)] = torch.as_tensor(list(c), dtype=torch.long)
    return out


class AttentionDecoder(nn.Module):
    """Soft-attention LSTM decoder of Xu et al. 2015 over annotation vectors ``a`` ``[B, L, D]``."""

    def __init__(self, vocab_size: int, feature_dim: int, *, embed_dim: int, hidden_dim: int, attention_dim: int,
                 dropout: float, gating: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.att_features = nn.Linear(feature_dim, attention_dim)  # W_a
        self.att_hidden = nn.Linear(hidden_dim, attention_dim)  # W_h
        self.att_score = nn.Linear(attention_dim, 1)  # w
        self.gate = nn.Linear(hidden_dim, 1) if gating else None  # f_beta
        self.lstm = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.out_hidden = nn.Linear(hidden_dim, embed_dim, bias=False)  # L_h
        self.out_context = nn.Linear(feature_dim, embed_dim, bias=False)  # L_z
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(embed_dim, vocab_size)  # L_o

    def init_state(self, features: torch.Tensor) -> State:
        """``features`` ``[B, L, D]`` -> state: ``h``, ``c`` ``[B, hidden]``, ``a`` and its projection ``[B, L, A]``."""
        mean = features.mean(dim=1)
        return {"h": self.init_h(mean), "c": self.init_c(mean), "a": features, "a_proj": self.att_features(features)}

    def attend(self, h: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
        """Context ``z`` ``[N, D]`` (gated) and weights ``alpha`` ``[N, L]`` (rows sum to 1) for ``h`` ``[N, H]``."""
        scores = self.att_score(torch.tanh(state["a_proj"] + self.att_hidden(h)[:, None, :])).squeeze(2)
        alpha = scores.softmax(dim=1)
        context = (alpha[:, :, None] * state["a"]).sum(dim=1)
        if self.gate is not None:
            context = torch.sigmoid(self.gate(h)) * context
        return context, alpha

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One word: ``tokens`` int64 ``[N]`` (``y_{t-1}``) -> logits ``[N, V]``, new state, ``alpha`` ``[N, L]``."""
        emb = self.embed(tokens)
        context, alpha = self.attend(state["h"], state)
        h, c = self.lstm(torch.cat([emb, context], dim=1), (state["h"], state["c"]))
        logits = self.out(self.dropout(emb + self.out_hidden(h) + self.out_context(context)))
        return logits, {**state, "h": h, "c": c}, alpha


class ShowTellDecoder(nn.Module):
    """The Show-and-Tell LSTM of Vinyals et al. 2015 over the pooled image feature (mean of ``[B, L, D]``)."""

    def __init__(self, vocab_size: int, feature_dim: int, *, embed_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.image_embed = nn.Linear(feature_dim, embed_dim)  # W_I
        self.embed = nn.Embedding(vocab_size, embed_dim)  # W_e
        self.lstm = nn.LSTMCell(embed_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def init_state(self, features: torch.Tensor) -> State:
        """Feed the image embedding once (t = -1) from a zero state: ``h``, ``c`` ``[B, hidden]``."""
        x = self.image_embed(features.mean(dim=1))
        h, c = self.lstm(x)
        return {"h": h, "c": c}

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, None]:
        """One word: ``tokens`` int64 ``[N]`` -> logits ``[N, V]``, new state, no attention."""
        h, c = self.lstm(self.embed(tokens), (state["h"], state["c"]))
        return self.out(self.dropout(h)), {"h": h, "c": c}, None


class Captioner(nn.Module):
    """Encoder (``backbone``) + decoder. Not a box detector: it maps images to captions.

    * :meth:`prepare`: ``uint8`` images ``[C, H, W]`` (any size, 1/3/4 channels) -> float ``[B, 3, S, S]``.
    * :meth:`encode`: ``[B, 3, S, S]`` normalised -> annotation vectors ``[B, L, D]``
      (``D = backbone.out_channels``, ``L`` the positions of its last map, after ``feature_grid`` pooling).
    * ``forward(x, captions)``: the training losses ``{"loss", "loss_xent", "loss_attention"}`` of
      captions int64 ``[B, T]`` (``<start> w1 .. wn <end> <pad>..``) for images ``x``.
    * :meth:`generate` / :meth:`caption`: decoded captions (greedy or beam search).
    """

    def __init__(self, backbone: nn.Module, params: CaptioningParams) -> None:
        super().__init__()
        self.params = params
        self.vocab = Vocabulary(list(params.vocabulary))
        self.backbone = backbone
        self.feature_dim = int(backbone.out_channels)
        if params.attention:
            self.decoder: AttentionDecoder | ShowTellDecoder = AttentionDecoder(
                len(self.vocab), self.feature_dim, embed_dim=params.embed_dim, hidden_dim=params.hidden_dim,
                attention_dim=params.attention_dim, dropout=params.dropout, gating=params.gating)
        else:
            self.decoder = ShowTellDecoder(len(self.vocab), self.feature_dim, embed_dim=params.embed_dim,
                                           hidden_dim=params.hidden_dim, dropout=params.dropout)
        self.register_buffer("mean", torch.tensor(params.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(params.image_std).view(1, 3, 1, 1), persistent=False)
        self.region_proposer: Any = None  # set by the head factory when the config names a proposer
        if params.freeze_encoder:
            self.backbone.requires_grad_(False)

    # ------------------------------------------------------------------ encoder

    def train(self, mode: bool = True) -> Captioner:
        super().train(mode)
        if self.params.freeze_encoder:
            self.backbone.eval()  # a frozen encoder keeps its BatchNorm statistics
        return self

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def prepare(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Images ``[C, H, W]``/``[H, W]``, ``uint8`` or float in [0, 1] (clamped, NaN -> 0), any sizes ->
        normalised ``[B, 3, S, S]``."""
        size = (self.params.input_size, self.params.input_size)
        batch = []
        for image in images:
            x = to_rgb(image)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else torch.nan_to_num(x.float(), nan=0.0)
            x = x.unsqueeze(0).to(self.device)
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            batch.append(x.clamp(0.0, 1.0))
        if not batch:
            return torch.zeros(0, 3, *size, device=self.device)
        return (torch.cat(batch) - self.mean) / self.std

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images ``[B, 3, S, S]`` -> annotation vectors ``[B, L, D]`` from the last feature map."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.params.freeze_encoder):
            features = self.backbone(x)
        if isinstance(features, dict):
            names = list(getattr(self.backbone, "feature_names", None) or features)  # required member; keys as fallback
            last = features[names[-1]]
        else:
            last = features
        if self.params.feature_grid is not None:
            last = F.adaptive_avg_pool2d(last, self.params.feature_grid)
        return last.flatten(2).transpose(1, 2)

    # ------------------------------------------------------------------ training

    def teacher_forcing(self, features: torch.Tensor,
                        captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, T-1, V]`` of ``captions[:, 1:]`` given ``captions[:, :-1]``, and attention ``[B, T-1, L]``."""
        state = self.decoder.init_state(features)
        logits, alphas = [], []
        for t in range(captions.shape[1] - 1):
            out, state, alpha = self.decoder.step(captions[:, t], state)
            logits.append(out)
            if alpha is not None:
                alphas.append(alpha)
        if not logits:
            raise ValueError("captions must hold at least <start> and one more token")
        return torch.stack(logits, 1), (torch.stack(alphas, 1) if alphas else None)

    def loss(self, features: torch.Tensor, captions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forced loss of captions int64 ``[B, T]`` given annotation vectors ``[B, L, D]``.

        ``loss = (sum of token cross-entropies + alpha_c * sum_b sum_i (1 - sum_t alpha_bti)^2) / tokens``.
        """
        captions = captions.to(features.device)
        logits, alphas = self.teacher_forcing(features, captions)
        targets = captions[:, 1:]
        mask = targets != self.vocab.pad_id
        tokens = mask.sum().clamp(min=1)
        xent = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=self.vocab.pad_id,
                               reduction="sum")
        attention = features.new_zeros(())
        if alphas is not None and self.params.alpha_c > 0:
            coverage = (alphas * mask[:, :, None]).sum(dim=1)  # [B, L]: sum over the caption's steps
            attention = self.params.alpha_c * ((1.0 - coverage) ** 2).sum()
        return {"loss": (xent + attention) / tokens, "loss_xent": xent / tokens, "loss_attention": attention / tokens}

    def forward(self, x: torch.Tensor, captions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training losses of ``captions`` int64 ``[B, T]`` for normalised images ``x`` ``[B, 3, S, S]``.

        Raises :class:`~visionkit.errors.UsageError` without ``captions``: a detection command
        (``visionkit detect``) calling the captioner as a box detector is told to use ``visionkit caption``.
        """
        if captions is None or not isinstance(x, torch.Tensor):
            raise UsageError("the captioning head describes images, it does not detect boxes; use "
                             "'visionkit caption IMAGE... --config/--weights ...' instead")
        return self.loss(self.encode(x), captions)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def generate(self, features: torch.Tensor, *, beam_size: int | None = None, max_length: int | None = None,
                 length_normalize: bool | None = None) -> list[Hypothesis]:
        """Decode annotation vectors ``[B, L, D]``: greedy when ``beam_size`` is 1, else beam search.

        Defaults come from the head's params. ``<pad>`` and ``<start>`` are never generated, nor ``<unk>``
        with ``suppress_unk``. Returns one :class:`Hypothesis` per image.
        """
        beam = self.params.beam_size if beam_size is None else int(beam_size)
        length = self.params.max_length if max_length is None else int(max_length)
        normalize = self.params.length_normalize if length_normalize is None else bool(length_normalize)
        if beam < 1 or length < 1:
            raise ValueError(f"beam_size and max_length must be >= 1, got {beam}, {length}")
        was_training = self.training
        self.eval()
        try:
            banned = [self.vocab.pad_id, self.vocab.start_id]
            if self.params.suppress_unk:
                banned.append(self.vocab.unk_id)
            common = {"start_id": self.vocab.start_id, "end_id": self.vocab.end_id, "max_length": length,
                      "banned": banned}
            if beam == 1:
                return greedy_search(self.decoder.step, self.decoder.init_state(features), features.shape[0],
                                     **common)
            return [beam_search(self.decoder.step, self.decoder.init_state(features[i:i + 1]), beam_size=beam,
                                length_normalize=normalize, **common)
                    for i in range(features.shape[0])]
        finally:
            self.train(was_training)

    def decode_text(self, hypothesis: Hypothesis) -> str:
        """The words of a hypothesis, joined by spaces (``<end>`` and what follows dropped)."""
        return self.vocab.decode(hypothesis.tokens)

    @torch.no_grad()
    def caption(self, images: Sequence[torch.Tensor], **options: Any) -> list[str]:
        """Captions of ``uint8`` images ``[C, H, W]`` (any sizes, grey or colour); ``options`` as :meth:`generate`."""
        if not images:
            return []
        was_training = self.training
        self.eval()
        try:
            features = self.encode(self.prepare(images))
        finally:
            self.train(was_training)
        return [self.decode_text(h) for h in self.generate(features, **options)]

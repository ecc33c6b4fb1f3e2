"""Greedy and beam-search decoding over any step function of a recurrent caption decoder.

A *step function* maps the previous tokens and the decoder state to the next-token logits::

    step(tokens: int64 [N], state: dict[str, Tensor [N, ...]]) -> (logits [N, V], new state, alpha [N, L] | None)

Every tensor in ``state`` has the batch (or beam) dimension first, so beams are reordered by
indexing each tensor. Tokens in ``banned`` (``<pad>``, ``<start>``) are never generated.

Length cap: at most ``max_length`` tokens are generated, ``<end>`` included; a hypothesis that has
not produced ``<end>`` by then is kept, truncated (its ``ended`` is false).

Beam search (as in Vinyals et al. 2015 / the im2txt code): at each step the ``beam_size`` best
one-token extensions of all live beams are kept; those ending in ``<end>`` move to the finished
list, the others stay live (so fewer than ``beam_size`` may stay live). The score of a hypothesis is
its summed log-probability; with ``length_normalize`` finished hypotheses are ranked by the mean
log-probability per generated token instead (``<end>`` counted). Without length normalisation the
search stops as soon as the best finished score is at least the best live score, which is exact
because log-probabilities are <= 0: no live beam can overtake it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Hypothesis", "StepFn", "greedy_search", "beam_search"]

State = dict[str, torch.Tensor]
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State, torch.Tensor | None]]


@dataclass(frozen=True)
class Hypothesis:
    """A decoded token sequence: ``tokens`` generated after ``<start>`` (``<end>`` last when ``ended``),
    ``score`` the sum of their log-probabilities."""

    tokens: tuple[int, ...]
    score: float
    ended: bool

    def ranking_score(self, length_normalize: bool) -> float:
        """``score``, or ``score / len(tokens)`` with ``length_normalize``."""
        return self.score / max(1, len(self.tokens)) if length_normalize else self.score


def _log_probs(logits: torch.Tensor, banned: Sequence[int]) -> torch.Tensor:
    logits = logits.float()
    if banned:
        logits = logits.clone()
        logits[:, list(banned)] = float("-inf")
    return F.log_softmax(logits, dim=-1)


def greedy_search(step: StepFn, state: State, batch: int, *, start_id: int, end_id: int, max_length: int,
                  banned: Sequence[int] = ()) -> list[Hypothesis]:
    """The most probable next token at every step, for ``batch`` sequences at once."""
    device = next(iter(state.values())).device if state else torch.device("cpu")
    tokens = torch.full((batch,), start_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, dtype=torch.float64, device=device)
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(max_length):
        logits, state, _ = step(tokens, state)
        logp = _log_probs(logits, banned)
        best, tokens = logp.max(dim=1)
        scores += torch.where(done, torch.zeros_like(best), best).double()
        for i in (~done).nonzero().flatten().tolist():
            out[i].append(int(tokens[i]))
        done |= tokens == end_id
        if bool(done.all()):
            break
    return [Hypothesis(tuple(t), float(s), bool(t) and t[-1] == end_id) for t, s in zip(out, scores.tolist(),
                                                                                      strict=True)]


def beam_search(step: StepFn, state: State, *, beam_size: int, start_id: int, end_id: int, max_length: int,
                length_normalize: bool = False, banned: Sequence[int] = ()) -> Hypothesis:
    """The best hypothesis for one input (``state`` has batch size 1) by beam search of width ``beam_size``."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    device = next(iter(state.values())).device if state else torch.device("cpu")
    live: list[tuple[int, ...]] = [()]
    live_scores = torch.zeros(1, dtype=torch.float64, device=device)
    last = torch.full((1,), start_id, dtype=torch.long, device=device)
    finished: list[Hypothesis] = []
    for _ in range(max_length):
        logits, state, _ = step(last, state)
        logp = _log_probs(logits, banned).double()
        candidates = (live_scores[:, None] + logp).flatten()
        k = min(beam_size, int(torch.isfinite(candidates).sum()))
        if k == 0:
            break
        top_scores, flat = candidates.topk(k)
        vocab = logp.shape[1]
        keep_beams: list[int] = []
        keep_tokens: list[int] = []
        keep_scores: list[float] = []
        next_live: list[tuple[int, ...]] = []
        for score, index in zip(top_scores.tolist(), flat.tolist(), strict=True):
            beam, token = divmod(index, vocab)
            seq = (*live[beam], token)
            if token == end_id:
                finished.append(Hypothesis(seq, score, True))
            else:
                keep_beams.append(beam)
                keep_tokens.append(token)
                keep_scores.append(score)
                next_live.append(seq)
        live = next_live
        if not live:
            live_scores = live_scores[:0]
            break
        index_t = torch.tensor(keep_beams, dtype=torch.long, device=device)
        state = {name: value.index_select(0, index_t) for name, value in state.items()}
        last = torch.tensor(keep_tokens, dtype=torch.long, device=device)
        live_scores = torch.tensor(keep_scores, dtype=torch.float64, device=device)
        if not length_normalize and finished and max(h.score for h in finished) >= float(live_scores.max()):
            live, live_scores = [], live_scores[:0]
            break
    finished.extend(Hypothesis(seq, float(s), False) for seq, s in zip(live, live_scores.tolist(), strict=True))
    if not finished:
        return Hypothesis((), 0.0, False)
    return max(finished, key=lambda h: h.ranking_score(length_normalize))

"""Level anchoring: name the lumbar chain by counting from the top of the spine (issue 15; *ours*).

The framed Pose-Net (:mod:`lumbar_monai.framing`) finds L1-L5 in a window around the lumbar spine, where it can
judge the level only from local cues: the sacrum below, T12 and the last ribs above. Where the lumbosacral junction
is transitional or out of view it names the whole chain a level off (the AASCE validation failures: nearly all whole
chains one level low or high). The AASCE annotation counts 17 vertebrae, T1 to L5, from the top of the spine.

A *level network* is a Pose-Net trained on whole-image framings only, large enough (384 px) that a vertebra is
about as many input pixels as in the 192 px lumbar window, with the thoracic vertebrae (T1-T12) as auxiliary maps:
it sees the whole spine and names L1-L5 as the annotation does. Its chain is the *reference*; the window passes stay
the localisers. After the last window pass the window network's named sequence (its auxiliary vertebrae directly
above L1, e.g. T11 and T12, then L1-L5) is shifted by the whole number of levels that brings it closest to the
reference (:func:`anchor_chain`). The shift is chosen by distance in units of the reference's centre spacing, so a
coarse reference that is a fraction of a level off still picks the right vertebra; a shift past L5 (window names one
level too high) extends the sequence by one centre spacing below L5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["centre_spacing", "shifted_chain", "level_costs", "level_decision", "anchor_chain", "AnchoredChain",
           "LEVEL_STATUSES", "DEFAULT_LEVEL_MARGIN", "LEVEL_OFF", "chain_shift"]

#: a shift must beat keeping the window's names by this many centre spacings (*ours*).
DEFAULT_LEVEL_MARGIN = 0.25

#: what the reference said of the window's names (``meta["level_check"]["status"]``; every status but
#: ``"confirmed"`` sets the QC flag ``level_unconfirmed``).
LEVEL_STATUSES = {
    "confirmed": "the reference names the chain as the window Pose-Net did",
    "renamed": "the reference named the chain by whole levels otherwise, and the chain was renamed",
    "disputed": "the reference matches neither the window's names nor a renaming clearly (half a level between, or "
    "further off than a renaming reaches): the window's names stand",
    "not_counted": "no reference (the counter found no T1 or no regular chain from it): the window's names stand",
}


#: a chain whose mean vertical error exceeds this many labelled centre spacings names another level (the benchmarks'
#: level-shift classes and the level audit).
LEVEL_OFF = 0.5


def chain_shift(chain, truth) -> float:
    """Mean vertical offset of a ``(V, 2)`` chain from the labelled ``(V, 2)`` centres, in labelled spacings (the
    median distance between neighbouring labelled centres); positive: the chain lies lower (caudal); NaN without a
    chain (``None``)."""
    if chain is None:
        return float("nan")
    truth = np.asarray(truth, dtype=np.float64)
    spacing = float(np.median(np.linalg.norm(np.diff(truth, axis=0), axis=1)))
    return float(np.mean(np.asarray(chain, dtype=np.float64)[:, 1] - truth[:, 1])) / spacing


def centre_spacing(centres) -> float:
    """Median over all pairs ``i < j`` of ``|c_j - c_i| / (j - i)`` of ``(V, 2)`` centres (non-finite rows ignored):
    the long baselines make it precise on a coarse pass, the median robust to one misplaced centre.

    Raises:
        ValueError: fewer than two finite centres.
    """
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    idx = np.flatnonzero(np.isfinite(c).all(1))
    if len(idx) < 2:
        raise ValueError("a centre spacing needs at least two finite centres")
    i, j = np.triu_indices(len(idx), k=1)
    return float(np.median(np.linalg.norm(c[idx[j]] - c[idx[i]], axis=1) / (idx[j] - idx[i])))


def shifted_chain(sequence, above: int, shift: int, count: int) -> np.ndarray:
    """``(count, 2)`` chain read from ``sequence`` (``(above + count, 2)``: ``above`` vertebrae over the chain, then
    the chain, top to bottom) ``shift`` levels down (negative: up). Past the end of the sequence the chain continues
    by the last step (``sequence[-1] - sequence[-2]``); a shift above the sequence's top is a ``ValueError``."""
    seq = np.asarray(sequence, dtype=np.float64).reshape(-1, 2)
    start = int(above) + int(shift)
    if start < 0:
        raise ValueError(f"shift {shift} reaches above the {above} vertebrae over the chain")
    step = seq[-1] - seq[-2]
    rows = [seq[k] if k < len(seq) else seq[-1] + (k - len(seq) + 1) * step for k in range(start, start + count)]
    return np.stack(rows)


def level_costs(reference, sequence, above: int, max_below: int = 1) -> dict[int, float]:
    """``{shift: median distance / reference spacing}`` for shifts ``-above .. max_below`` of the window's named
    ``sequence`` (see :func:`shifted_chain`) against the ``(V, 2)`` ``reference`` chain; ``inf`` where a chain
    holds a non-finite centre."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    spacing = max(centre_spacing(ref), 1e-6)
    costs = {}
    for s in range(-int(above), int(max_below) + 1):
        d = np.linalg.norm(shifted_chain(sequence, above, s, len(ref)) - ref, axis=1)
        costs[s] = float(np.median(d) / spacing) if np.isfinite(d).all() else float("inf")
    return costs


class AnchoredChain(NamedTuple):
    """:func:`anchor_chain`'s answer: the chain, its confidence, the shift applied and its status
    (:data:`LEVEL_STATUSES`)."""

    chain: np.ndarray
    confidence: np.ndarray
    shift: int
    status: str


def level_decision(costs: dict[int, float], margin: float = DEFAULT_LEVEL_MARGIN,
                   agreement: float | None = None) -> tuple[int, str]:
    """``(shift, status)`` from :func:`level_costs`: the best shift where it beats keeping the window's names by more
    than ``margin`` and, with ``agreement``, lies within that many spacings of the reference (``"renamed"``);
    0 and ``"confirmed"`` where keeping the names is best; 0 and ``"disputed"`` otherwise."""
    best = min(costs, key=lambda s: (costs[s], abs(s)))
    if agreement is not None and costs[best] > float(agreement):
        return 0, "disputed"
    if best == 0:
        return 0, "confirmed"
    if costs[best] + float(margin) < costs.get(0, float("inf")):
        return best, "renamed"
    return 0, "disputed"


def anchor_chain(reference, sequence, confidence: Sequence[float], above: int,
                 margin: float = DEFAULT_LEVEL_MARGIN, max_below: int = 1,
                 agreement: float | None = None) -> AnchoredChain:
    """The window's chain renamed by the level the ``reference`` names: ``(chain (V, 2), confidence (V,), shift,
    status)``.

    ``sequence``: ``(above + V, 2)`` window centres, the ``above`` auxiliary vertebrae over the chain then the chain;
    ``confidence``: their ``above + V`` peak heights (an extrapolated centre gets the last one's). The window's own
    names stay (``shift`` 0) unless another shift is closer to the reference by more than ``margin`` spacings
    and, with ``agreement``, within that many spacings of it: a reference that no renaming matches (a count from
    the wrong vertebra, a chain off by more levels than the shifts reach) renames nothing (:func:`level_decision`).
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    seq = np.asarray(sequence, dtype=np.float64).reshape(-1, 2)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    v = len(ref)
    if len(seq) != int(above) + v or len(conf) != len(seq):
        raise ValueError(f"sequence and confidence need {int(above) + v} rows, got {len(seq)} and {len(conf)}")
    shift, status = level_decision(level_costs(ref, seq, above, max_below), margin, agreement)
    start = int(above) + shift
    idx = np.minimum(np.arange(start, start + v), len(seq) - 1)
    return AnchoredChain(shifted_chain(seq, above, shift, v), conf[idx], shift, status)

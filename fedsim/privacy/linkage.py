"""Re-identification (linkage) attacks: can a released record be linked to its source?

Threat model. The attacker holds the client's original embeddings X with their labels (a
leaked or public copy of the data), the whole release with its labels (they travel in
clear), the mechanism and its public parameters (Kerckhoffs; ``profile.AttackerProfile``)
and a few known (original, released) pairs — the aux pairs. It runs every attack of the
menu below and the reported rate is the best one's: the client measures the risk its
release carries against the strongest attacker fedsim knows, and the figure is never
below any simpler attack fedsim also runs.

Menu: a comparison *space* (where released rows and originals are compared) × a linking
*rule*; ``reidentification_attack`` = 10 × space + rule of the winner.

=====  ====================  ================================================================
space  name                  comparison space
=====  ====================  ================================================================
1      aligned               the map between released and original space fitted on the aux
                             pairs that links best on held-out aux pairs
                             (``alignment.fit_attacker``; identity without pairs); with
                             rule 1, the attack fedsim ran before the menu existed
2      likelihood            the noise mechanism's standardised space and likelihood cost
                             (``attacks.noise``): only when the profile names the mechanism
3      quantile-columns      released columns put back in original order by quantile
                             matching against X (``attacks.quantiles``): permutations
4      subspace              originals projected onto the release's own affine span
                             (``attacks.subspace``): a pca release mapped back with its basis
5      self-pca              originals projected on the attacker's own PCA axes, matched by
                             quantiles (``attacks.subspace``): a raw pca release
6      self-training         forward ridge map refitted on the attacker's own confident
                             links, from the space-1 (else space-5) assignment
                             (``attacks.bootstrap``): projections (d' != d), per-record
                             releases
=====  ====================  ================================================================

====  =======================  ==============================================================
rule  name                     linking
====  =======================  ==============================================================
1     nearest                  each released row to its nearest original (all n), alone
2     nearest within label     the same among the originals with the row's released label
3     assignment               one-to-one minimum-cost assignment of the non-aux released rows
                               to the non-aux originals (``attacks.assignment``): per-record
                               releases only, whose rows are a bijection of the originals
4     assignment within label  the same, one block per label
====  =======================  ==============================================================

Spaces 2-5 need no pairs and run when the profile's method calls for them (``profile``),
or, for an unknown method, whenever the shapes allow. Rules 2 and 4 run when the profile
says labels are used; then, for per-record releases (whose released label is the
source's), they replace rules 1 and 3 (except aligned nearest, the attack fedsim always
ran): restricting to the label never loses the source and costs a tenth of the full
search (L1 and L∞ distances, and assignments on costs without signal, are the expensive
parts).

``reidentification_rate`` = (1/|E|) Σ_{j∈E} 1[the original linked to r_j is one of its
sources S(j)], E a seeded sample (≤ ``max_samples``) of the released rows that have a
source and are not aux pairs (the assignment itself covers all of them). Ties count as
success: for nearest rules an original tied with the nearest (within ``matching.REL_TOL``,
among the ``matching.TIES`` nearest); for assignment rules an original equal to the source.

``reidentification_rate_member`` (aggregating methods: S(j) a group): the same, but success
only when the linked original is one member drawn at random (seeded) from S(j) — the
chance that the attacker's single guess names a given member, at most 1/|S(j)| for rows
that are exact group means (k-anonymity's promise). Equal to the group rate for
per-record releases.

``reidentification_baseline`` = mean_{j∈E} max(|S(j)| / n, |S(j) ∩ C(j)| / |C(j)|), C(j) the
originals with row j's released label (the second term only when labels are used): linking
to a uniformly random original, of the released label if that is better (1/n per record
without labels, about 1/|class| with them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedsim.privacy.attacks import SPACES
from fedsim.privacy.attacks.assignment import assign
from fedsim.privacy.attacks.bootstrap import self_train
from fedsim.privacy.matching import nearest, tied_hits
from fedsim.privacy.pairs import Pairs

RULES = {1: "nearest", 2: "nearest within label", 3: "assignment", 4: "assignment within label"}


@dataclass
class LinkOutcome:
    """One attack of the menu on the evaluated rows."""

    code: int  # 10 * space + rule
    view: str  # the view's own name (e.g. "forward-ridge")
    hits: np.ndarray  # (|E|,) bool: linked to a source
    member_hits: np.ndarray  # (|E|,) bool: linked to the sampled member

    @property
    def name(self) -> str:
        return f"{SPACES[self.code // 10]}/{RULES[self.code % 10]}"




@dataclass
class LinkSetup:
    """What every attack of the menu shares."""

    X: np.ndarray
    y: np.ndarray
    X_rel: np.ndarray
    y_rel: np.ndarray
    pairs: Pairs
    aux: np.ndarray  # known pairs (released rows)
    heldout: np.ndarray  # released rows with a source outside the aux pairs (sorted)
    evaluated: np.ndarray  # the scored sample of ``heldout`` (sorted)
    members: np.ndarray  # one source per evaluated row, drawn at random
    labels: bool  # label rules run
    device: torch.device

    @property
    def one_to_one(self) -> bool:
        """Per-record release: its rows are a bijection of the originals."""
        return not self.pairs.aggregating and self.pairs.m == self.pairs.n

    def rules(self, space: int, pair: tuple[int, int]) -> tuple[int, ...]:
        """Which of (rule, its within-label twin) run in ``space``: without labels the plain
        rule; with labels on a per-record release (a source carries its row's label, so
        restricting never loses the source and spares the full search) only the twin, except
        aligned nearest, the attack fedsim always ran; with labels on an aggregated release
        (majority labels) both."""
        if not self.labels:
            return pair[:1]
        if not self.one_to_one or pair == (1, 2) and space == 1:
            return pair
        return pair[1:]

    def candidates(self) -> np.ndarray:
        """Originals that are not in a known pair (what the assignment distributes)."""
        return np.setdiff1d(np.arange(self.pairs.n), self.pairs.members_of_rows(self.aux))

    def assignment_hits(self, linked: np.ndarray) -> np.ndarray:
        """Per evaluated row, from the links of all held-out rows: source or an identical original."""
        got = linked[np.searchsorted(self.heldout, self.evaluated)]
        ok = got >= 0
        same = np.zeros(len(got), dtype=bool)
        same[ok] = (self.X[got[ok]] == self.X[self.evaluated[ok]]).all(1)
        return ok & (same | self.pairs.in_group(np.maximum(got, 0), self.pairs.row_group[self.evaluated]))


def attack_space(s: LinkSetup, view, code: int, bootstrap: bool) -> list[LinkOutcome]:
    """The rules of the menu in one view (plus self-training from it when ``bootstrap``)."""
    out = []
    Z, DB = view.release_side(s.X_rel[s.evaluated]), view.original_side(s.X)
    for rule in s.rules(code, (1, 2)):
        labelled = rule == 2
        dist, idx = nearest(Z, DB, view.metric, s.device, s.y_rel[s.evaluated] if labelled else None,
                            s.y if labelled else None)
        hits, member = tied_hits(dist, idx, s.pairs, s.evaluated, s.members)
        out.append(LinkOutcome(10 * code + rule, view.name, hits, member))
    if not s.one_to_one:
        return out
    cands = s.candidates()
    Zh, DBc = view.release_side(s.X_rel[s.heldout]), DB[cands]
    for rule in s.rules(code, (3, 4)):
        labels = (s.y_rel[s.heldout], s.y[cands]) if rule == 4 else (None, None)
        found = assign(Zh, DBc, view.cost, s.device, *labels)
        linked = np.where(found >= 0, cands[np.maximum(found, 0)], -1)
        hits = s.assignment_hits(linked)
        out.append(LinkOutcome(10 * code + rule, view.name, hits, hits))
        if bootstrap and (rule == 4) == s.labels:
            refined = self_train(s.X, s.X_rel, s.heldout, cands, s.aux, Zh, DBc, linked, s.device, *labels)
            hits = s.assignment_hits(refined)
            out.append(LinkOutcome(60 + rule, view.name, hits, hits))
    return out


def reidentification_baseline(pairs: Pairs, evaluated: np.ndarray, y: np.ndarray | None = None,
                              y_rel: np.ndarray | None = None) -> float:
    """Success rate of linking each evaluated row to a uniformly random original — of its
    released label when labels ``y``/``y_rel`` are given, if that is better."""
    if len(evaluated) == 0 or pairs.n == 0:
        return float("nan")
    chance = np.minimum(pairs.sizes[evaluated], pairs.n) / pairs.n
    if y is not None and y_rel is not None:
        class_size = np.bincount(y)
        keys, inverse = np.unique(np.stack([pairs.row_group[evaluated], y_rel[evaluated]], axis=1), axis=0,
                                  return_inverse=True)
        within = np.zeros(len(keys))
        for t, (g, c) in enumerate(keys):
            if 0 <= c < len(class_size) and class_size[c]:
                sources = pairs.g_members[pairs.g_offsets[g] : pairs.g_offsets[g + 1]]
                within[t] = np.count_nonzero(y[sources] == c) / class_size[c]
        chance = np.maximum(chance, within[inverse.ravel()])
    return float(chance.mean())

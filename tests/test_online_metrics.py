"""Continual-learning metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsim.online.metrics import continual_metrics, study_metrics, timing_summary

KEYS = {"average_accuracy", "mean_round_accuracy", "average_forgetting", "backward_transfer",
        "backward_transfer_all_pairs", "positive_backward_transfer", "remembering", "forward_transfer"}


def check(got: dict[str, float], want: dict[str, float]) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_three_rounds_by_hand():
    R = np.array([[0.8, 0.3, 0.2],
                  [0.6, 0.9, 0.4],
                  [0.7, 0.5, 0.7]])
    b = [0.1, 0.2, 0.3]
    m = continual_metrics(R, b)
    assert set(m) == KEYS
    check(m, {
        "average_accuracy": 1.9 / 3,           # (0.7 + 0.5 + 0.7) / 3
        "mean_round_accuracy": 0.8,            # (0.8 + 0.9 + 0.7) / 3
        # f_0 = max(0.8, 0.6) - 0.7 = 0.1;  f_1 = max(0.3, 0.9) - 0.5 = 0.4;  F = 0.5 / 2
        "average_forgetting": 0.25,
        "backward_transfer": -0.25,            # ((0.7 - 0.8) + (0.5 - 0.9)) / 2
        # (1,0): 0.6-0.8 = -0.2; (2,0): 0.7-0.8 = -0.1; (2,1): 0.5-0.9 = -0.4; sum -0.7 / (3*2/2)
        "backward_transfer_all_pairs": -0.7 / 3,
        "positive_backward_transfer": 0.0,     # max(-0.2333, 0)
        "remembering": 1 - 0.7 / 3,            # 1 - |-0.2333|
        "forward_transfer": 0.1,               # ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = (0.1 + 0.1) / 2
    })


def test_perfect_memory():
    # every domain keeps the accuracy it reached when it was learned (R[i, j] = R[j, j] for i >= j)
    R = [[0.9, 0.1, 0.1],
         [0.9, 0.8, 0.2],
         [0.9, 0.8, 0.7]]
    m = continual_metrics(R)
    check(m, {
        "average_accuracy": 0.8,               # (0.9 + 0.8 + 0.7) / 3
        "average_forgetting": 0.0,             # f_0 = 0.9 - 0.9; f_1 = max(0.1, 0.8) - 0.8
        "backward_transfer": 0.0,
        "backward_transfer_all_pairs": 0.0,
        "positive_backward_transfer": 0.0,
        "remembering": 1.0,
    })
    assert math.isnan(m["forward_transfer"])   # no b


def test_catastrophic_forgetting():
    # 4 rounds, only the domain just trained on is good: 0.9 on the diagonal, 0.1 elsewhere
    R = np.full((4, 4), 0.1)
    np.fill_diagonal(R, 0.9)
    b = np.full(4, 0.1)
    check(continual_metrics(R, b), {
        "average_accuracy": 0.3,               # (0.1 * 3 + 0.9) / 4
        "mean_round_accuracy": 0.9,            # what a single "current domain" curve would show
        "average_forgetting": 0.8,             # each f_j = 0.9 - 0.1
        "backward_transfer": -0.8,             # each R[3, j] - R[j, j] = 0.1 - 0.9
        "backward_transfer_all_pairs": -0.8,   # all 6 pairs are -0.8
        "positive_backward_transfer": 0.0,
        "remembering": 0.2,                    # 1 - 0.8
        "forward_transfer": 0.0,               # R[j-1, j] = 0.1 = b[j]
    })


def test_positive_backward_transfer():
    # training on domain 1 also improves domain 0
    R = [[0.5, 0.2],
         [0.7, 0.8]]
    check(continual_metrics(R, b=[0.0, 0.1]), {
        "average_accuracy": 0.75,              # (0.7 + 0.8) / 2
        "average_forgetting": -0.2,            # max(0.5) - 0.7: negative forgetting
        "backward_transfer": 0.2,              # 0.7 - 0.5
        "backward_transfer_all_pairs": 0.2,    # one pair, / (2*1/2)
        "positive_backward_transfer": 0.2,
        "remembering": 1.0,                    # 1 - |min(0.2, 0)|
        "forward_transfer": 0.1,               # R[0, 1] - b[1] = 0.2 - 0.1
    })


def test_all_pairs_sees_intermediate_forgetting_that_final_bwt_misses():
    # domain 0 drops to 0.4 in round 1, then both domains end above their learned accuracy
    R = [[0.8, 0.3, 0.1],
         [0.4, 0.8, 0.1],
         [0.9, 0.9, 0.8]]
    check(continual_metrics(R), {
        "backward_transfer": 0.1,              # ((0.9 - 0.8) + (0.9 - 0.8)) / 2
        "backward_transfer_all_pairs": -0.2 / 3,  # (-0.4 + 0.1 + 0.1) / 3
        "positive_backward_transfer": 0.0,
        "remembering": 1 - 0.2 / 3,
        "average_forgetting": -0.1,            # f_0 = max(0.8, 0.4) - 0.9; f_1 = max(0.3, 0.8) - 0.9
    })


def test_single_round():
    m = continual_metrics([[0.6]], b=[0.5])
    assert m["average_accuracy"] == pytest.approx(0.6)
    assert m["mean_round_accuracy"] == pytest.approx(0.6)
    for key in KEYS - {"average_accuracy", "mean_round_accuracy"}:
        assert math.isnan(m[key]), key


@pytest.mark.parametrize("R, b, match", [
    ([0.5, 0.6], None, r"^R must be 2-D"),
    ([[0.5, 0.6]], None, r"^R must be square"),
    (np.zeros((0, 0)), None, r"^R is empty"),
    ([[0.5, math.nan], [0.5, 0.5]], None, r"^R contains nan"),
    ([[0.5, 1.5], [0.5, 0.5]], None, r"^R must hold accuracies in \[0, 1\]"),
    ([[-0.1]], None, r"^R must hold accuracies"),
    ([[0.5, 0.5], [0.5, 0.5]], [0.1], r"^b must have one accuracy per domain \(len 2\)"),
    ([[0.5, 0.5], [0.5, 0.5]], [[0.1, 0.1]], r"^b must be 1-D"),
    ([[0.5, 0.5], [0.5, 0.5]], [0.1, math.inf], r"^b contains nan or inf"),
])
def test_validation(R, b, match):
    with pytest.raises(ValueError, match=match):
        continual_metrics(R, b)


def test_study_metrics_by_hand():
    m = study_metrics([0.5, 0.7, 0.6, 0.8])
    check(m, {
        "study_average_accuracy": 0.65,        # 2.6 / 4
        # i=1: 0.5 - 0.7 = -0.2; i=2: max(0.5, 0.7) - 0.6 = 0.1; i=3: max(.5, .7, .6) - 0.8 = -0.1
        "study_forgetting": -0.2 / 3,
        "study_bwt_plus": 0.1 / 3,             # drops: 0, 0.1, 0
        "study_fwt": 0.4 / 3,                  # rises: 0.2, 0, 0.2
    })
    one = study_metrics([0.4])
    assert one["study_average_accuracy"] == pytest.approx(0.4)
    assert all(math.isnan(one[k]) for k in ("study_forgetting", "study_bwt_plus", "study_fwt"))
    with pytest.raises(ValueError, match=r"^acc must be 1-D"):
        study_metrics([[0.5, 0.6]])


def test_study_average_is_the_mean_round_accuracy():
    # the study tested the current (single) domain each round, i.e. the diagonal of R
    R = np.array([[0.8, 0.3, 0.2], [0.6, 0.9, 0.4], [0.7, 0.5, 0.7]])
    assert study_metrics(np.diag(R))["study_average_accuracy"] == pytest.approx(
        continual_metrics(R)["mean_round_accuracy"])


def test_timing_summary():
    t = timing_summary([1.0, 2.0, 3.0], [0.5, 0.25])
    assert t == {"avg_training_time_s": pytest.approx(2.0), "avg_inference_time_s": pytest.approx(0.375)}
    with pytest.raises(ValueError, match=r"^train_s must be a non-empty"):
        timing_summary([], [0.1])
    with pytest.raises(ValueError, match=r"^infer_s must hold finite, non-negative"):
        timing_summary([1.0], [-0.1])

"""Song-level evaluation: per-tag, macro and micro AUCs against hand sums and definitions."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from orpheus.evaluation import evaluate, plot_curves, song_predictions

LABELS = ["rock", "jazz", "pop"]


def _arrays(seed: int = 0, n: int = 40):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    score = np.clip(0.5 * y + rng.random((n, 3)) * 0.7, 0, 1)
    return y, score


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(a positive scores above a negative), a tie counting one half (Mann-Whitney U / pairs)."""
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def _average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Mean over positives of the precision among all tracks scored at least as high."""
    return float(np.mean([(s[y] >= t).sum() / (s >= t).sum() for t in s[y]]))


# Five test tracks, four tags. polka has no positive and live no negative: no AUC for them, and
# they are left out of the macro means, but their (track, tag) pairs are in the micro pool.
HAND_LABELS = ["rock", "jazz", "polka", "live"]
HAND_TRUTH = np.array(
    [[1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]], np.float32
)
HAND_SCORE = np.array(
    [
        [0.6, 0.7, 0.05, 0.95],
        [0.4, 0.8, 0.05, 0.95],
        [0.9, 0.5, 0.05, 0.95],
        [0.3, 0.5, 0.05, 0.95],
        [0.2, 0.1, 0.05, 0.95],
    ]
)
# rock: positives 0.6, 0.4; negatives 0.9, 0.3, 0.2.
#   ROC: 0.6 beats 0.3 and 0.2, and so does 0.4: 4 of 6 pairs = 2/3.
#   PR (average precision): ranked 0.9-, 0.6+, 0.4+, ...: precision 1/2 at the first positive,
#   2/3 at the second: (1/2 + 2/3) / 2 = 7/12.
# jazz: positives 0.7, 0.5; negatives 0.8, 0.5, 0.1 (a positive and a negative tie at 0.5).
#   ROC: 0.7 beats 0.5 and 0.1 (2); 0.5 beats 0.1 and ties 0.5 (1 + 1/2): 3.5 of 6 = 7/12.
#   PR: ranked 0.8-, 0.7+, {0.5+, 0.5-}, 0.1-: precision 1/2 at 0.7; the tied pair is one
#   threshold, 2 positives among 4 tracks: (1/2 + 1/2) / 2 = 1/2.
HAND_ROC = {"rock": F(2, 3), "jazz": F(7, 12)}
HAND_PR = {"rock": F(7, 12), "jazz": F(1, 2)}
# macro: ROC (2/3 + 7/12) / 2 = 5/8; PR (7/12 + 1/2) / 2 = 13/24.
# micro: all 20 pairs in one ranking. 9 positives: live 0.95 x5, 0.7, 0.6, 0.5, 0.4;
#   11 negatives: 0.9, 0.8, 0.5, 0.3, 0.2, 0.1, polka 0.05 x5.
#   ROC: each 0.95 beats all 11 (55); 0.7 and 0.6 beat 9 each (not 0.9, 0.8); 0.5 beats 8 and
#   ties 1 (8.5); 0.4 beats 8: (55 + 9 + 9 + 8.5 + 8) / (9 * 11) = 89.5 / 99 = 179/198.
#   PR: ranked 0.95+ x5, 0.9-, 0.8-, 0.7+, 0.6+, {0.5+, 0.5-}, 0.4+, ...: the five live
#   positives at precision 1, then 6/8, 7/9, 8/11, 9/12: (5 + 3/4 + 7/9 + 8/11 + 3/4) / 9.
HAND_MICRO_ROC = F(179, 198)
HAND_MICRO_PR = (5 + F(3, 4) + F(7, 9) + F(8, 11) + F(3, 4)) / 9


def test_aucs_of_a_tiny_case_computed_by_hand():
    r = evaluate(HAND_TRUTH, HAND_SCORE, HAND_LABELS)
    # abs=1e-12 here and below: the values are exact fractions, computed in float64 from at most
    # a few hundred terms (rounding ~1e-14); one pair or rank counted wrong moves them by > 1e-3.
    for tag in ("rock", "jazz"):
        assert r["per_tag"][tag]["roc_auc"] == pytest.approx(float(HAND_ROC[tag]), abs=1e-12)
        assert r["per_tag"][tag]["pr_auc"] == pytest.approx(float(HAND_PR[tag]), abs=1e-12)
    assert r["roc_auc_macro"] == pytest.approx(5 / 8, abs=1e-12)
    assert r["pr_auc_macro"] == pytest.approx(13 / 24, abs=1e-12)
    assert r["roc_auc_micro"] == pytest.approx(float(HAND_MICRO_ROC), abs=1e-12)
    assert r["pr_auc_micro"] == pytest.approx(float(HAND_MICRO_PR), abs=1e-12)
    # as the module and the README say: no AUC, null values, left out of the macro means
    assert r["tags_without_auc"] == ["polka", "live"] and r["tags_evaluated"] == 2
    assert r["per_tag"]["polka"] == {"roc_auc": None, "pr_auc": None, "positives": 0}
    assert r["per_tag"]["live"] == {"roc_auc": None, "pr_auc": None, "positives": 5}
    assert [r["per_tag"][t]["positives"] for t in ("rock", "jazz")] == [2, 2]
    assert r["tracks"] == 5


def test_no_tag_with_an_auc_gives_null_averages():
    r = evaluate(np.zeros((3, 2)), np.full((3, 2), 0.5), ["polka", "yodel"])
    assert (
        r["roc_auc_macro"] is r["pr_auc_macro"] is r["roc_auc_micro"] is r["pr_auc_micro"] is None
    )
    assert r["tags_evaluated"] == 0 and r["tags_without_auc"] == ["polka", "yodel"]


def test_aucs_match_their_definitions_on_random_scores_with_ties():
    y, score = _arrays()
    score = np.round(score, 1)  # ties within and across tags, as real probabilities can have
    r = evaluate(y, score, LABELS)
    truth = y > 0.5
    roc = [_roc_auc(truth[:, j], score[:, j]) for j in range(3)]
    pr = [_average_precision(truth[:, j], score[:, j]) for j in range(3)]
    for j, tag in enumerate(LABELS):
        assert r["per_tag"][tag]["roc_auc"] == pytest.approx(roc[j], abs=1e-12)
        assert r["per_tag"][tag]["pr_auc"] == pytest.approx(pr[j], abs=1e-12)
        assert r["per_tag"][tag]["positives"] == int(truth[:, j].sum())
    assert r["roc_auc_macro"] == pytest.approx(np.mean(roc), abs=1e-12)
    assert r["pr_auc_macro"] == pytest.approx(np.mean(pr), abs=1e-12)
    assert r["roc_auc_micro"] == pytest.approx(_roc_auc(truth.ravel(), score.ravel()), abs=1e-12)
    assert r["pr_auc_micro"] == pytest.approx(
        _average_precision(truth.ravel(), score.ravel()), abs=1e-12
    )
    assert r["tracks"] == 40 and r["tags_evaluated"] == 3


def test_song_predictions_average_over_each_tracks_windows():
    def predict(windows):  # one "probability" per label: the window's mean, its max, a constant
        w = windows.reshape(len(windows), -1)
        return np.stack([w.mean(1), w.max(1), np.full(len(w), 0.5)], axis=1)

    tracks = [
        (b"TRA", np.arange(10, dtype=np.float32).reshape(5, 2), np.array([1, 0, 0])),
        ("TRB", np.ones((1, 2), np.float32), np.array([0, 1, 1])),
    ]
    seen = []
    out = song_predictions(predict, tracks, batch_size=2, on_track=lambda: seen.append(1))
    assert out.tids == ["TRA", "TRB"] and len(seen) == 2
    np.testing.assert_allclose(
        out.y_score[0], [4.5, 5.0, 0.5]
    )  # mean over 5 windows, batched 2+2+1
    np.testing.assert_allclose(out.y_score[1], [1.0, 1.0, 0.5])
    np.testing.assert_array_equal(out.y_true, [[1, 0, 0], [0, 1, 1]])


def test_song_predictions_leave_out_silent_windows_and_silent_tracks():
    calls = []

    def predict(windows):  # the window's mean, recording every window the model is asked about
        calls.extend(windows[:, 0].tolist())
        return windows.mean(axis=1, keepdims=True)

    tracks = [
        ("TRA", np.arange(8, dtype=np.float32).reshape(4, 2), np.array([1]), [1, 0, 0, 1]),
        ("TRQUIET", np.ones((3, 2), np.float32), np.array([1]), [False, False, False]),
        ("TRB", np.full((2, 2), 5.0, np.float32), np.array([0]), [True, True]),
    ]
    out = song_predictions(predict, tracks, batch_size=1)
    assert out.tids == ["TRA", "TRB"] and out.silent == ["TRQUIET"]
    np.testing.assert_allclose(out.y_score, [[(0.5 + 6.5) / 2], [5.0]])  # windows 0 and 3 of TRA
    assert calls == [0.0, 6.0, 5.0, 5.0]  # silent windows never reach the model


def test_plots_are_written(tmp_path):
    y, score = _arrays(1)
    paths = plot_curves(y, score, LABELS, tmp_path / "plots")
    assert [p.name for p in paths] == ["roc.png", "pr.png"]
    assert all(
        p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths
    )


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="shapes do not match"):
        evaluate(np.zeros((3, 2)), np.zeros((3, 3)), LABELS)

"""Song-level evaluation: per-tag / macro / micro AUCs against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from orpheus.evaluation import evaluate, plot_curves, song_predictions

LABELS = ["rock", "jazz", "pop"]


def _arrays(seed: int = 0, n: int = 40):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    score = np.clip(0.5 * y + rng.random((n, 3)) * 0.7, 0, 1)
    return y, score


def test_macro_and_micro_match_sklearn():
    y, score = _arrays()
    r = evaluate(y, score, LABELS)
    roc = [roc_auc_score(y[:, j], score[:, j]) for j in range(3)]
    pr = [average_precision_score(y[:, j], score[:, j]) for j in range(3)]
    assert r["roc_auc_macro"] == pytest.approx(np.mean(roc))
    assert r["pr_auc_macro"] == pytest.approx(np.mean(pr))
    assert r["roc_auc_macro"] == pytest.approx(roc_auc_score(y, score, average="macro"))
    assert r["roc_auc_micro"] == pytest.approx(roc_auc_score(y, score, average="micro"))
    assert r["pr_auc_micro"] == pytest.approx(average_precision_score(y, score, average="micro"))
    assert r["per_tag"]["jazz"]["roc_auc"] == pytest.approx(roc[1])
    assert r["per_tag"]["jazz"]["positives"] == int(y[:, 1].sum())
    assert r["tracks"] == 40 and r["tags_evaluated"] == 3


def test_known_values_by_hand_and_tags_without_auc_left_out_of_the_macro():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]], np.float32)
    score = np.array([[0.9, 0.1, 0.5], [0.8, 0.2, 0.5], [0.7, 0.3, 0.5], [0.1, 0.4, 0.5]])
    r = evaluate(y, score, LABELS)
    # rock: positives 0.9 and 0.7 against negatives 0.8 and 0.1 -> 3 of 4 pairs ordered
    assert r["per_tag"]["rock"]["roc_auc"] == pytest.approx(0.75)
    # AP: ranks 1 (pos), 2 (neg), 3 (pos) -> (1/1 + 2/3) / 2
    assert r["per_tag"]["rock"]["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    # jazz has no positive and pop no negative: no AUC, not averaged in
    assert r["per_tag"]["jazz"]["roc_auc"] is None and r["per_tag"]["pop"]["pr_auc"] is None
    assert r["tags_without_auc"] == ["jazz", "pop"]
    assert r["roc_auc_macro"] == pytest.approx(0.75) and r["tags_evaluated"] == 1


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

"""Metrics against hand cases and plain per-query / per-sample loop references written here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from training.evaluation.metrics import (
    attribute_metrics,
    cosine_distance,
    evaluate_centroids,
    evaluate_rank,
    reid_metrics,
)


def _same_cam(qc: int, gc: int) -> bool:
    return qc == gc and qc != -1 and gc != -1


def rank_reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        ordered = sorted(range(len(g_pids)), key=lambda j: distmat[i][j])
        kept = [
            j for j in ordered if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and _same_cam(q_cams[i], g_cams[j]))
        ]
        matches = [g_pids[j] == q_pids[i] for j in kept]
        if not any(matches):
            continue
        hits, precisions, last = 0, [], 0
        for r, m in enumerate(matches, start=1):
            if m:
                hits += 1
                precisions.append(hits / r)
                last = r
        first = matches.index(True)
        cmcs.append([1.0 if k >= first else 0.0 for k in range(max_rank)])
        aps.append(sum(precisions) / len(precisions))
        inps.append(hits / last)
    return np.mean(cmcs, axis=0), sum(aps) / len(aps), sum(inps) / len(inps)


def _random_split(rng, n_q, n_g, n_ids, n_cams, unknown_cams=False):
    q_pids = rng.integers(0, n_ids, n_q)
    g_pids = rng.integers(-1, n_ids, n_g)  # -1 = junk
    q_cams = rng.integers(1, n_cams + 1, n_q)
    g_cams = rng.integers(1, n_cams + 1, n_g)
    if unknown_cams:
        q_cams[rng.random(n_q) < 0.2] = -1
        g_cams[rng.random(n_g) < 0.2] = -1
    return q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize(("n_g", "max_rank", "unknown_cams"), [(300, 50, False), (300, 20, True), (25, 50, True)])
def test_evaluate_rank_matches_loop_reference(n_g: int, max_rank: int, unknown_cams: bool) -> None:
    rng = np.random.default_rng(n_g + max_rank)
    q_pids, g_pids, q_cams, g_cams = _random_split(rng, 40, n_g, 12, 4, unknown_cams)
    distmat = rng.random((40, n_g))  # continuous: no ties
    cmc, m_ap, m_inp = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    ref_cmc, ref_ap, ref_inp = rank_reference(
        distmat, q_pids.tolist(), g_pids.tolist(), q_cams.tolist(), g_cams.tolist(), max_rank
    )
    assert cmc.shape == (max_rank,)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-6)
    assert m_ap == pytest.approx(ref_ap, abs=1e-6)
    assert m_inp == pytest.approx(ref_inp, abs=1e-6)


def test_evaluate_rank_hand_case() -> None:
    # query 0 (pid 1, cam 1): its cam-1 image is removed -> pid2, pid1, pid3, pid1: first hit at rank 2,
    # AP = (1/2 + 2/4) / 2 = 0.5, mINP = 2 / 4. Query 1 (pid 3, cam 2): hit at rank 1, AP = mINP = 1.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.05], [0.5, 0.4, 0.3, 0.1, 0.2, 0.01]])
    g_pids = np.array([1, 2, 1, 3, 1, -1])  # the last one is junk, though nearest
    g_cams = np.array([1, 2, 2, 1, 3, 2])
    cmc, m_ap, m_inp = evaluate_rank(distmat, np.array([1, 3]), g_pids, np.array([1, 2]), g_cams, max_rank=5)
    np.testing.assert_allclose(cmc, [0.5, 1.0, 1.0, 1.0, 1.0])
    assert (m_ap, m_inp) == pytest.approx((0.75, 0.75))
    # camera unknown for query 0: nothing removed, its cam-1 image is the nearest match
    cmc, m_ap, _ = evaluate_rank(distmat, np.array([1, 3]), g_pids, np.array([-1, 2]), g_cams, max_rank=5)
    assert cmc[0] == 1.0
    assert m_ap == pytest.approx((1.0 + (1 + 2 / 3 + 3 / 5) / 3) / 2)


def test_evaluate_rank_rejects_no_valid_query_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="no query"):
        evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([1]), np.array([1]), np.array([1, 1]))


def test_cosine_distance_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    np.testing.assert_allclose(cosine_distance(q, g), cdist(q, g, "cosine"), atol=1e-10)


def test_reid_metrics_separable_and_against_reference() -> None:
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(6, 16))
    g_pids = np.repeat(np.arange(6), 4)
    q_pids = np.arange(6)
    g = centres[g_pids] + 0.01 * rng.normal(size=(24, 16))
    q = centres[q_pids] + 0.01 * rng.normal(size=(6, 16))
    q_cams, g_cams = np.ones(6, int), np.tile([1, 2, 3, 4], 6)
    perfect = reid_metrics(q, g, q_pids, g_pids, q_cams, g_cams)
    assert perfect == pytest.approx({"rank1": 1.0, "rank5": 1.0, "rank10": 1.0, "mAP": 1.0, "mINP": 1.0})
    q_noisy = q + 1.5 * rng.normal(size=q.shape)
    got = reid_metrics(q_noisy, g, q_pids, g_pids, q_cams, g_cams)
    cmc, m_ap, m_inp = rank_reference(cdist(q_noisy, g, "cosine"), q_pids, g_pids, q_cams, g_cams, 10)
    assert got == pytest.approx(
        {"rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "mAP": m_ap, "mINP": m_inp}, abs=1e-6
    )


def centroid_reference(q, g, q_pids, g_pids, q_cams, g_cams):
    """Per query: build every gallery identity's centroid from its allowed images, rank, score the own one."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    ranks = []
    for i in range(len(q)):
        dists = {}
        for pid in sorted(set(g_pids.tolist()) - {-1}):
            rows = [
                j
                for j in range(len(g))
                if g_pids[j] == pid and not (pid == q_pids[i] and _same_cam(q_cams[i], g_cams[j]))
            ]
            if rows:
                c = gn[rows].mean(0)
                dists[pid] = 1.0 - float(qn[i] @ (c / np.linalg.norm(c)))
        if q_pids[i] not in dists:
            continue
        ranks.append(sorted(dists.values()).index(dists[q_pids[i]]))
    ranks = np.array(ranks)
    ap = float(np.mean(1.0 / (ranks + 1)))
    return {
        "rank1": float(np.mean(ranks < 1)),
        "rank5": float(np.mean(ranks < 5)),
        "rank10": float(np.mean(ranks < 10)),
        "mAP": ap,
        "mINP": ap,
    }


@pytest.mark.parametrize("unknown_cams", [False, True])
def test_evaluate_centroids_matches_loop_reference(unknown_cams: bool) -> None:
    rng = np.random.default_rng(3 + unknown_cams)
    q_pids, g_pids, q_cams, g_cams = _random_split(rng, 50, 150, 20, 3, unknown_cams)
    centres = rng.normal(size=(20, 8))
    q = centres[q_pids] + 1.2 * rng.normal(size=(50, 8))
    g = centres[np.maximum(g_pids, 0)] + 1.2 * rng.normal(size=(150, 8))
    got = evaluate_centroids(q, g, q_pids, g_pids, q_cams, g_cams)
    ref = centroid_reference(q, g, q_pids, g_pids, q_cams, g_cams)
    assert 0.0 < got["rank1"] < 1.0
    assert got == pytest.approx(ref, abs=1e-6)


def test_evaluate_centroids_skips_query_whose_identity_is_only_in_its_camera() -> None:
    g = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g_pids, g_cams = np.array([1, 2, 2]), np.array([1, 1, 2])
    # query 0 (pid 1, cam 1): pid 1 only in cam 1 -> skipped. Query 1 (pid 2, cam 1): centroid = image 2 only,
    # at cos 0.6 from the query (1, 0), while pid 1 at cos 1: rank 2. (Were query 0 kept with an empty centroid,
    # it would come first, as pid 2 points away from it.)
    queries = np.array([[-1.0, 0.0], [1.0, 0.0]])
    got = evaluate_centroids(queries, g, np.array([1, 2]), g_pids, np.array([1, 1]), g_cams)
    assert got == pytest.approx({"rank1": 0.0, "rank5": 1.0, "rank10": 1.0, "mAP": 0.5, "mINP": 0.5})


@dataclass
class Head:
    name: str
    type: str
    labels: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.labels) if self.type == "softmax" else 1


HEADS = [
    Head("color", "softmax", ["red", "green", "blue"]),
    Head("gender", "binary", ["male", "female"]),
    Head("hat", "binary", ["no", "yes"]),
]


def attribute_reference(probs, targets):
    """Binarised attributes built per sample and per attribute with plain loops."""
    rows = []  # per sample: list of (name, pred, gt) for known attributes
    for n in range(len(probs)):
        items = []
        if targets[n][0] >= 0:
            arg = int(np.argmax(probs[n][:3]))
            items += [(f"color.{lab}", arg == c, targets[n][0] == c) for c, lab in enumerate(["red", "green", "blue"])]
        for j, (name, col) in enumerate([("gender", 3), ("hat", 4)], start=1):
            if targets[n][j] >= 0:
                items.append((name, probs[n][col] > 0.5, targets[n][j] == 1))
        rows.append(items)
    names = ["color.red", "color.green", "color.blue", "gender", "hat"]
    balanced, skipped = [], []
    for name in names:
        pairs = [(p, g) for items in rows for (a, p, g) in items if a == name]
        pos = [p for p, g in pairs if g]
        neg = [p for p, g in pairs if not g]
        if not pos or not neg:
            skipped.append(name)
            continue
        balanced.append((sum(pos) / len(pos) + sum(not p for p in neg) / len(neg)) / 2)
    acc, prec, rec = [], [], []
    for items in rows:
        if not items:
            continue
        inter = sum(p and g for _, p, g in items)
        union = sum(p or g for _, p, g in items)
        n_pred, n_gt = sum(p for _, p, _ in items), sum(g for _, _, g in items)
        acc.append(inter / union if union else 0.0)
        prec.append(inter / n_pred if n_pred else 0.0)
        rec.append(inter / n_gt if n_gt else 0.0)
    p, r = sum(prec) / len(prec), sum(rec) / len(rec)
    return {
        "mA": sum(balanced) / len(balanced),
        "skipped": skipped,
        "instance": {"accuracy": sum(acc) / len(acc), "precision": p, "recall": r, "f1": 2 * p * r / (p + r)},
    }


def test_attribute_metrics_match_loop_reference() -> None:
    rng = np.random.default_rng(4)
    n = 60
    logits = rng.normal(size=(n, 3))
    probs = np.concatenate([np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rng.random((n, 2))], axis=1)
    targets = np.stack([rng.integers(-1, 3, n), rng.integers(-1, 2, n), rng.integers(-1, 2, n)], axis=1)
    targets[:, 2] = np.where(targets[:, 2] == 1, 0, targets[:, 2])  # hat: no positive -> skipped
    got = attribute_metrics(probs, targets, HEADS)
    ref = attribute_reference(probs.tolist(), targets.tolist())
    assert got["mA"] == pytest.approx(ref["mA"], abs=1e-9)
    assert got["skipped"] == ref["skipped"] == ["hat"]
    assert got["instance"] == pytest.approx(ref["instance"], abs=1e-9)
    assert set(got["per_attribute"]) == {"color.red", "color.green", "color.blue", "gender", "hat"}
    known = targets[:, 0] >= 0
    assert got["per_head_accuracy"]["color"] == pytest.approx(np.mean(probs[known, :3].argmax(1) == targets[known, 0]))
    assert got["average_accuracy"] == pytest.approx(np.mean(list(got["per_head_accuracy"].values())))


def test_attribute_metrics_hand_case() -> None:
    # gender: targets 1, 1, 0, 0, -1 with probabilities 0.9, 0.2, 0.1, 0.7, 0.9 -> pos recall 1/2, neg recall 1/2
    # color: targets 0, 1, 2, 2, -1 with argmax 0, 1, 2, 0, 1 -> head accuracy 3/4
    probs = np.array(
        [
            [0.8, 0.1, 0.1, 0.9, 0.0],
            [0.1, 0.8, 0.1, 0.2, 0.0],
            [0.1, 0.1, 0.8, 0.1, 0.0],
            [0.6, 0.2, 0.2, 0.7, 0.0],
            [0.2, 0.5, 0.3, 0.9, 0.0],
        ]
    )
    targets = np.array([[0, 1, -1], [1, 1, -1], [2, 0, -1], [2, 0, -1], [-1, -1, -1]])
    got = attribute_metrics(probs, targets, HEADS)
    assert got["per_attribute"]["gender"]["mA"] == pytest.approx(0.5)
    assert got["per_attribute"]["gender"]["accuracy"] == pytest.approx(0.5)
    assert got["per_head_accuracy"] == {"color": pytest.approx(0.75), "gender": pytest.approx(0.5), "hat": None}
    assert got["average_accuracy"] == pytest.approx(0.625)
    # balanced: color recalls 1, 1, 1/2 over its three classes; a constant "red" would score 1/3, not 1/4
    assert got["per_head_balanced_accuracy"] == {
        "color": pytest.approx(5 / 6),
        "gender": pytest.approx(0.5),
        "hat": None,
    }
    constant = attribute_metrics(np.tile(probs[:1], (5, 1)), targets, HEADS)
    assert constant["per_head_balanced_accuracy"]["color"] == pytest.approx(1 / 3)
    # color.red: positives {0} predicted {0, 3}: recall 1, negative recall 2/3; precision 1/2
    assert got["per_attribute"]["color.red"]["mA"] == pytest.approx((1 + 2 / 3) / 2)
    assert got["per_attribute"]["color.red"]["precision"] == pytest.approx(0.5)
    assert got["skipped"] == ["hat"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in got["per_head_accuracy"].values() if v is not None)


def test_attribute_metrics_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="N x 5"):
        attribute_metrics(np.zeros((2, 4)), np.zeros((2, 3), int), HEADS)
    with pytest.raises(ValueError, match="targets"):
        attribute_metrics(np.zeros((2, 5)), np.zeros((2, 2), int), HEADS)

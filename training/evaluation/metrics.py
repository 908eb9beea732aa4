"""Evaluation metrics in numpy only (no torch), so they also score ONNX Runtime outputs.

Re-id: the Market-1501 protocol (CMC, mAP, mINP) image to image and over gallery centroids. Attributes: the PAR
figures (mA, instance-based metrics) and Market's official per-head "average accuracy".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from personid.manifest import HeadLike, head_slices


def _as_1d(name: str, x: Any, n: int) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> tuple[np.ndarray, float, float]:
    """Market-1501 protocol, as torchreid's `eval_market1501` / fast-reid's `evaluate_rank`: returns (cmc of length
    max_rank, mAP, mINP), fractions.

    For each query, gallery items with the same pid AND the same camera are removed, as are junk items (pid -1);
    a query with no valid match left is skipped. AP = mean precision at each hit; mINP = hits / rank of the hardest
    hit (Ye et al., AGW). CMC beyond the gallery length keeps its last value (torchreid shortens max_rank instead).
    Extension for data without cameras: a camera id of -1 means unknown, and the same-camera rule removes nothing
    when either side's camera is -1; then the query's own image, if it is also in the gallery, cannot be told apart
    and counts as a match: keep query images out of the gallery in that case.
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be Q x G, got shape {distmat.shape}")
    num_q, num_g = distmat.shape
    q_pids, q_camids = _as_1d("q_pids", q_pids, num_q), _as_1d("q_camids", q_camids, num_q)
    g_pids, g_camids = _as_1d("g_pids", g_pids, num_g), _as_1d("g_camids", g_camids, num_g)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    all_cmc, all_ap, all_inp = [], [], []
    ranks = np.arange(1, max_rank + 1)
    chunk = 256  # vectorised over a block of queries; bounds the memory of the sorted gallery matrices
    for start in range(0, num_q, chunk):
        order = np.argsort(distmat[start : start + chunk], axis=1)
        pids, cams = g_pids[order], g_camids[order]
        q_pid = q_pids[start : start + chunk, None]
        q_cam = q_camids[start : start + chunk, None]
        match = pids == q_pid
        same_cam = (cams == q_cam) & (cams != -1) & (q_cam != -1)
        keep = ~((match & same_cam) | (pids == -1))
        raw = match & keep
        n_hits = raw.sum(1)
        valid = n_hits > 0
        if not valid.any():
            continue
        raw, keep, n_hits = raw[valid], keep[valid], n_hits[valid]
        kept_rank = np.cumsum(keep, axis=1)  # 1-based rank of each kept item among the kept ones
        hits = np.cumsum(raw, axis=1)
        all_ap.append(np.where(raw, hits / np.maximum(kept_rank, 1), 0.0).sum(1) / n_hits)
        rows = np.arange(len(raw))
        first = kept_rank[rows, raw.argmax(1)]
        last = kept_rank[rows, raw.shape[1] - 1 - raw[:, ::-1].argmax(1)]
        all_inp.append(n_hits / last)
        all_cmc.append((first[:, None] <= ranks[None, :]).astype(np.float64))
    if not all_cmc:
        raise ValueError("no query has a valid match in the gallery: check the pids and camera ids")
    return np.concatenate(all_cmc).mean(0), float(np.concatenate(all_ap).mean()), float(np.concatenate(all_inp).mean())


def _l2_normalize(x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 2:
        raise ValueError(f"features must be N x D, got shape {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_distance(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """`1 - cos(q_i, g_j)` (Q x G). Inputs are re-normalised, so raw features work too. Float32 inputs (what the
    model and ONNX Runtime give) are computed in float32: twice as fast on a Market-size gallery."""
    dtype = np.result_type(np.asarray(q).dtype, np.asarray(g).dtype, np.float32)
    qn, gn = _l2_normalize(q, dtype), _l2_normalize(g, dtype)
    if qn.shape[1] != gn.shape[1]:
        raise ValueError(f"query dim {qn.shape[1]} != gallery dim {gn.shape[1]}")
    return 1.0 - qn @ gn.T


def _summary(cmc: np.ndarray, m_ap: float, m_inp: float) -> dict[str, float]:
    return {"rank1": float(cmc[0]), "rank5": float(cmc[4]), "rank10": float(cmc[9]), "mAP": m_ap, "mINP": m_inp}


def reid_metrics(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
) -> dict[str, float]:
    """Image-to-image re-id figures (cosine distance, Market protocol): rank1/5/10, mAP, mINP as fractions."""
    return _summary(*evaluate_rank(cosine_distance(q_feats, g_feats), q_pids, g_pids, q_camids, g_camids, max_rank=10))


def evaluate_centroids(
    q_feats: np.ndarray,
    g_feats: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
) -> dict[str, float]:
    """Centroid evaluation of the CTL paper (Wieczorek et al. 2021): each gallery identity is the re-normalised mean
    of its gallery embeddings, ranked by cosine distance; one relevant item per query (its own identity), so
    AP = mINP = 1 / rank. Not comparable with per-image mAP: report both, labelled.

    Market rule per query: the query's own identity's centroid leaves out that identity's images from the query's
    camera (none left: the query is skipped); junk (pid -1) is in no centroid; cameras -1 are unknown and never
    excluded. Other identities keep all their images, as in the image protocol. Distractors (pid 0 in Market) form
    one identity like any other pid, as they stay negatives in the image protocol. Done with per (identity, camera)
    sums, without looping over the gallery per query.
    """
    q = _l2_normalize(q_feats)
    g = _l2_normalize(g_feats)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    q_pids, q_camids = _as_1d("q_pids", q_pids, len(q)), _as_1d("q_camids", q_camids, len(q))
    g_pids, g_camids = _as_1d("g_pids", g_pids, len(g)), _as_1d("g_camids", g_camids, len(g))
    valid_g = g_pids != -1
    ids, g_id = np.unique(g_pids[valid_g], return_inverse=True)
    g, g_cams = g[valid_g], g_camids[valid_g]
    cams, g_cam = np.unique(g_cams, return_inverse=True)
    n_ids, n_cams = len(ids), len(cams)
    if n_ids == 0:
        raise ValueError("the gallery has no identity (only junk)")
    sums = np.zeros((n_ids, g.shape[1]))
    np.add.at(sums, g_id, g)
    cell_sums = np.zeros((n_ids, n_cams, g.shape[1]))
    np.add.at(cell_sums, (g_id, g_cam), g)
    cell_counts = np.zeros((n_ids, n_cams))
    np.add.at(cell_counts, (g_id, g_cam), 1.0)
    dist_full = 1.0 - q @ _l2_normalize(sums).T  # Q x I

    pos = np.searchsorted(ids, q_pids)
    in_gallery = (pos < n_ids) & (ids[np.minimum(pos, n_ids - 1)] == q_pids)
    q_cam = np.searchsorted(cams, q_camids)
    cam_known = (q_camids != -1) & (q_cam < n_cams) & (cams[np.minimum(q_cam, n_cams - 1)] == q_camids)
    pos_c, cam_c = np.minimum(pos, n_ids - 1), np.minimum(q_cam, n_cams - 1)
    own_sum = sums[pos_c] - np.where(cam_known[:, None], cell_sums[pos_c, cam_c], 0.0)
    own_count = cell_counts[pos_c].sum(1) - np.where(cam_known, cell_counts[pos_c, cam_c], 0.0)
    valid_q = in_gallery & (own_count > 0)
    if not valid_q.any():
        raise ValueError("no query has a valid gallery identity: check the pids and camera ids")
    d_own = 1.0 - (q * _l2_normalize(own_sum)).sum(1)
    others = dist_full.copy()
    others[np.arange(len(q)), pos_c] = np.inf
    rank = (others < d_own[:, None]).sum(1)[valid_q]  # 0-based rank of the only relevant centroid
    ap = 1.0 / (rank + 1.0)
    return {
        "rank1": float((rank < 1).mean()),
        "rank5": float((rank < 5).mean()),
        "rank10": float((rank < 10).mean()),
        "mAP": float(ap.mean()),
        "mINP": float(ap.mean()),
    }


def _attribute_columns(
    heads: Sequence[HeadLike], probs: np.ndarray, targets: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Binarise: one attribute per binary head, one per class of a softmax head (one-vs-rest on the argmax).
    Returns names, predictions, ground truth and the known mask, each N x A."""
    names, preds, gts, known = [], [], [], []
    for j, (head, columns) in enumerate(zip(heads, head_slices(heads), strict=True)):
        cols = probs[:, columns]
        t = targets[:, j]
        k = t >= 0
        labels = list(head.labels)
        if head.type == "binary":
            names.append(head.name)
            preds.append(cols[:, 0] > 0.5)
            gts.append(t == 1)
            known.append(k)
        elif head.type == "softmax":
            arg = cols.argmax(1)
            for c in range(cols.shape[1]):
                names.append(f"{head.name}.{labels[c] if c < len(labels) else c}")
                preds.append(arg == c)
                gts.append(t == c)
                known.append(k)
    return names, np.stack(preds, 1), np.stack(gts, 1), np.stack(known, 1)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _attribute_figures(p: np.ndarray, g: np.ndarray) -> dict[str, float | int | None]:
    """Recalls, precision, F1 and balanced accuracy of one binarised attribute over its known samples."""
    tp, tn = int((p & g).sum()), int((~p & ~g).sum())
    n_pos, n_neg, n_pred = int(g.sum()), int((~g).sum()), int(p.sum())
    pos_recall, neg_recall = _ratio(tp, n_pos), _ratio(tn, n_neg)
    precision = _ratio(tp, n_pred)
    f1 = (
        2 * precision * pos_recall / (precision + pos_recall)
        if precision is not None and pos_recall is not None and precision + pos_recall > 0
        else None
    )
    ma = (pos_recall + neg_recall) / 2 if pos_recall is not None and neg_recall is not None else None
    return {
        "mA": ma,
        "accuracy": _ratio(tp + tn, n_pos + n_neg),
        "positive_recall": pos_recall,
        "negative_recall": neg_recall,
        "precision": precision,
        "recall": pos_recall,
        "f1": f1,
        "positives": n_pos,
        "negatives": n_neg,
    }


def _instance_figures(pred: np.ndarray, gt: np.ndarray, known: np.ndarray) -> dict[str, float | None]:
    """Per-sample accuracy, precision and recall over its known attributes, averaged; F1 of the averages."""
    pk, gk = pred & known, gt & known
    inter = (pk & gk).sum(1).astype(np.float64)
    union = (pk | gk).sum(1).astype(np.float64)
    n_pred, n_gt = pk.sum(1).astype(np.float64), gk.sum(1).astype(np.float64)
    has_known = known.any(1)

    def mean_ratio(num: np.ndarray, den: np.ndarray) -> float | None:
        if not has_known.any():
            return None
        r = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        return float(r[has_known].mean())

    inst_prec, inst_rec = mean_ratio(inter, n_pred), mean_ratio(inter, n_gt)
    inst_f1 = (
        2 * inst_prec * inst_rec / (inst_prec + inst_rec)
        if inst_prec is not None and inst_rec is not None and inst_prec + inst_rec > 0
        else None
    )
    return {"accuracy": mean_ratio(inter, union), "precision": inst_prec, "recall": inst_rec, "f1": inst_f1}


def attribute_metrics(probs: np.ndarray, targets: np.ndarray, heads: Sequence[HeadLike]) -> dict[str, Any]:
    """Pedestrian attribute figures over known targets (-1 = unknown, excluded everywhere).

    Binarisation: each binary head is one attribute (probability > 0.5 = labels[1]); each softmax head gives one
    attribute per class, one-vs-rest on its argmax (Market: 9 + 4 + 8 + 9 = 30 attributes), named `head.label`.
    - `mA`: mean over attributes of (positive recall + negative recall) / 2 (the PAR literature's main figure);
      attributes with no known positive or no known negative are left out and listed in `skipped`.
    - `instance`: accuracy |P and G| / |P or G|, precision, recall per sample over its known attributes, averaged;
      F1 from the averaged precision and recall; 0/0 counts as 0 (the convention of Rethinking of PAR's code).
    - `average_accuracy`: Market's official figure, the mean over heads of the per-head accuracy (argmax for
      softmax heads, 0.5 threshold for binary).
    - `per_head_balanced_accuracy`: per head, the mean recall over the classes present in its known targets
      (scikit-learn's balanced accuracy; chance is 1 / classes however skewed the labels): the figure a user
      on another camera feels, where a head that always says the majority class scores chance.
    Undefined values (nothing to divide by) are None, so the result serialises to strict JSON.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    columns = sum(int(h.size) for h in heads)
    if probs.ndim != 2 or probs.shape[1] != columns:
        raise ValueError(f"probs must be N x {columns}, got shape {probs.shape}")
    if targets.shape != (probs.shape[0], len(heads)):
        raise ValueError(f"targets must be N x H = {probs.shape[0]} x {len(heads)}, got {targets.shape}")
    names, pred, gt, known = _attribute_columns(heads, probs, targets)

    per_attribute = {name: _attribute_figures(pred[known[:, a], a], gt[known[:, a], a]) for a, name in enumerate(names)}
    skipped = [name for name, figures in per_attribute.items() if figures["mA"] is None]
    balanced = [figures["mA"] for figures in per_attribute.values() if figures["mA"] is not None]
    instance = _instance_figures(pred, gt, known)

    per_head: dict[str, float | None] = {}
    balanced_head: dict[str, float | None] = {}
    for j, (head, columns) in enumerate(zip(heads, head_slices(heads), strict=True)):
        t = targets[:, j]
        k = t >= 0
        cols = probs[:, columns]
        pred_h = cols.argmax(1) if head.type == "softmax" else (cols[:, 0] > 0.5).astype(np.int64)
        per_head[head.name] = float((pred_h[k] == t[k]).mean()) if k.any() else None
        recalls = [float((pred_h[k][t[k] == c] == c).mean()) for c in np.unique(t[k])]
        balanced_head[head.name] = float(np.mean(recalls)) if recalls else None
    head_accs = [a for a in per_head.values() if a is not None]

    return {
        "mA": float(np.mean(balanced)) if balanced else None,
        "average_accuracy": float(np.mean(head_accs)) if head_accs else None,
        "instance": instance,
        "per_attribute": per_attribute,
        "per_head_accuracy": per_head,
        "per_head_balanced_accuracy": balanced_head,
        "skipped": skipped,
    }

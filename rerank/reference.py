"""Dense reference implementations of the classic re-rankers, for checking and timing the sparse ones.

Written from the papers and the authors' released algorithms (loops and N x N numpy arrays, float64 unless said
otherwise), independently of the sparse implementations of this package: `tests/test_rerank.py` checks every
re-ranker against them, and `benchmarks/bench_rerank.py` times the dense k-reciprocal and GNN ports as the
memory-hungry comparison (ACP Sec. IV-C1). Quadratic in N: use only on small problems.
"""
from __future__ import annotations

import numpy as np


def euclidean(a, b):
    """The dense float64 Euclidean distance matrix."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def unit(x):
    """Rows scaled to unit length (float64)."""
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dense_k_reciprocal(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """Zhong et al. 2017 as torchreid's / FastReID's re_ranking(q_g_dist, q_q_dist, g_g_dist) computes it: float32
    N x N matrices and an inverted index (so `benchmarks.bench_rerank` also times it as the dense comparison)."""
    num_query = len(q_g_dist)
    dist = np.block([[q_q_dist, q_g_dist], [q_g_dist.T, g_g_dist]]).astype(np.float32) ** 2
    dist = (dist / dist.max(axis=0)).T  # column-max normalisation
    n = len(dist)
    ranking = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        forward = ranking[i, :k + 1]
        return forward[(ranking[forward, :k + 1] == i).any(axis=1)]

    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        neighbourhood = reciprocal(i, k1)
        expanded = set(neighbourhood.tolist())
        for candidate in neighbourhood:
            half = reciprocal(candidate, int(np.around(k1 / 2.0)))
            if len(np.intersect1d(half, neighbourhood)) > 2.0 / 3.0 * len(half):
                expanded.update(half.tolist())
        members = sorted(expanded)
        weights = np.exp(-dist[i, members])
        v[i, members] = weights / weights.sum()
    if k2 != 1:
        v = np.stack([v[ranking[i, :k2]].mean(axis=0) for i in range(n)])
    holders = [np.nonzero(column)[0] for column in v.T]  # inverted index: rows non-zero in each column
    jaccard = np.empty((num_query, n), dtype=np.float32)
    for i in range(num_query):
        overlap = np.zeros(n, dtype=np.float32)
        for column in np.nonzero(v[i])[0]:
            rows = holders[column]
            overlap[rows] += np.minimum(v[i, column], v[rows, column])
        jaccard[i] = 1.0 - overlap / (2.0 - overlap)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_query]
    return final[:, num_query:]


def dense_alpha_qe(query, gallery, k, alpha, raw=False):
    """alpha-QE over query + gallery (cosine weights to the power alpha, k neighbours incl. itself), summing the unit
    vectors, or with `raw` the raw embeddings as FastReID's `aqe` does."""
    raw_x = np.concatenate([query, gallery]).astype(np.float64)
    x = unit(raw_x)
    similarity = x @ x.T
    summed = raw_x if raw else x
    expanded = np.zeros_like(x)
    for i in range(len(x)):
        top = np.argsort(-similarity[i], kind="stable")[:k]
        expanded[i] = (similarity[i, top, None] ** alpha * summed[top]).sum(axis=0)
    expanded = unit(expanded)
    return euclidean(expanded[:len(query)], expanded[len(query):])


def dense_sca(query, gallery, k1, k2):
    """Bai and Bai 2016 as SCA_demo.m computes it, on squared Euclidean distances."""
    x = np.concatenate([query, gallery])
    dist = euclidean(x, x) ** 2
    ranking = np.argsort(dist, axis=1, kind="stable")
    dist = dist / dist.max(axis=1, keepdims=True)
    f = np.zeros_like(dist)
    for i in range(len(x)):
        top = ranking[i, :k1]
        weights = np.exp(-dist[i, top])
        f[i, top] = weights / weights.sum()
    if k2 != 1:
        f = np.stack([f[ranking[i, :k2]].sum(axis=0) for i in range(len(x))])
    overlap = np.minimum(f[:len(query), None, :], f[None, len(query):, :]).sum(axis=2)
    return 1.0 - overlap / (2.0 * k2 - overlap)


def dense_ecn(query, gallery, k, t, q):
    """Sarfraz et al. 2018, rank-list distance with per-row min-max normalisation as in the released MATLAB."""
    x = unit(np.concatenate([query, gallery]))
    ranking = np.argsort(1.0 - x @ x.T, axis=1, kind="stable")
    position = np.argsort(ranking, axis=1)
    weights = np.maximum(0, k - position).astype(np.float64)
    similarity = weights @ weights.T
    low, high = similarity.min(axis=1, keepdims=True), similarity.max(axis=1, keepdims=True)
    rank_dist = 1.0 - (similarity - low) / (high - low)

    def neighbourhood(i):
        first = list(ranking[i, 1:t + 1])
        return first + [j for c in first for j in ranking[c, 1:q + 1]]

    num_query = len(query)
    out = np.zeros((num_query, len(gallery)))
    for p in range(num_query):
        for g in range(len(gallery)):
            terms = [rank_dist[n, num_query + g] for n in neighbourhood(p)]
            terms += [rank_dist[n, p] for n in neighbourhood(num_query + g)]
            out[p, g] = np.mean(terms)
    return out


def dense_gnn(query, gallery, k1, k2):
    """Zhang et al. 2020 as the released gnn_reranking computes it; returns the similarity A_q . A_g."""
    x = unit(np.concatenate([query, gallery]))
    score = x @ x.T
    ranking = np.argsort(-score, axis=1, kind="stable")[:, :k1]
    strength = np.take_along_axis(score, ranking, axis=1) ** 2
    adjacency = np.zeros_like(score)
    np.put_along_axis(adjacency, ranking, 1.0, axis=1)
    if k2 != 1:
        for _ in range(2):
            adjacency = adjacency + adjacency.T
            adjacency = np.stack([(strength[i, :k2, None] * adjacency[ranking[i, :k2]]).sum(axis=0)
                                  for i in range(len(x))])
            adjacency /= np.linalg.norm(adjacency, axis=1, keepdims=True)
    return adjacency[:len(query)] @ adjacency[len(query):].T

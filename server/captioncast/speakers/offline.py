"""Who spoke, for a whole file: agglomerative clustering of its utterances' voices.

A live session must label each final as it goes (speakers/roster.py); a file's answer
comes after its last final, so every utterance can be compared with every other before
any is labelled. Average linkage on cosine distance, each utterance weighted by its
voiced seconds (a long turn says more about a voice than a "yes"), merging until the
nearest two clusters are further apart than `RosterOptions.same_voice` allows. Pure:
embeddings in, labels out; numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from captioncast.speakers.roster import RosterOptions


def _unit(embedding: np.ndarray) -> np.ndarray:
    vector = np.asarray(embedding, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def average_linkage(embeddings: np.ndarray, weights: np.ndarray,
                    max_distance: float) -> np.ndarray:
    """Cluster index per row of `embeddings` (unit vectors), merging while the weighted
    average cosine distance between two clusters is at most `max_distance`."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    distance = 1.0 - np.clip(embeddings @ embeddings.T, -1.0, 1.0)
    np.fill_diagonal(distance, np.inf)
    mass = np.maximum(np.asarray(weights, dtype=np.float64), 1e-6)
    members = np.arange(n)  # row i's cluster is the row it was merged into
    alive = np.ones(n, dtype=bool)
    while alive.sum() > 1:
        flat = int(np.argmin(distance))
        i, j = divmod(flat, n)
        if distance[i, j] > max_distance:
            break
        # Lance-Williams for weighted average linkage: the merged cluster's distance to
        # any other is the mass-weighted mean of its two parts' distances.
        merged = (mass[i] * distance[i] + mass[j] * distance[j]) / (mass[i] + mass[j])
        distance[i], distance[:, i] = merged, merged
        distance[i, i] = np.inf
        distance[j], distance[:, j] = np.inf, np.inf
        mass[i] += mass[j]
        alive[j] = False
        members[members == j] = i
    return members


def cluster_voices(embeddings: Sequence[np.ndarray | None], voiced_s: Sequence[float],
                   options: RosterOptions | None = None) -> list[str]:
    """A label S1, S2, ... per utterance, numbered in order of first appearance.

    An utterance with no embedding (too little voice to embed) takes the label of the
    utterance before it, as a live final does. One with less than `reliable_s` of voice
    neither founds nor shapes a cluster: it joins the nearest cluster's centroid, since
    its embedding is too noisy to be trusted as evidence of a voice of its own.
    """
    options = options or RosterOptions()
    n = len(embeddings)
    if len(voiced_s) != n:
        raise ValueError("one voiced duration per embedding")
    known = [i for i, e in enumerate(embeddings) if e is not None and np.size(e)]
    reliable = [i for i in known if voiced_s[i] >= options.reliable_s] or known
    cluster_of: dict[int, int] = {}
    if reliable:
        matrix = np.stack([_unit(embeddings[i]) for i in reliable])  # type: ignore[arg-type]
        weights = np.array([voiced_s[i] for i in reliable])
        members = average_linkage(matrix, weights, 1.0 - options.same_voice)
        cluster_of = {index: int(c) for index, c in zip(reliable, members, strict=True)}
        clusters = sorted(set(cluster_of.values()))
        centroids = np.stack([_unit(np.sum(
            [matrix[k] * weights[k] for k in range(len(reliable)) if members[k] == c], axis=0))
            for c in clusters])
        for i in known:
            if i not in cluster_of:
                nearest = int(np.argmax(centroids @ _unit(embeddings[i])))  # type: ignore[arg-type]
                cluster_of[i] = clusters[nearest]
    labels: list[str] = []
    names: dict[int, str] = {}
    previous: str | None = None
    for i in range(n):
        cluster = cluster_of.get(i)
        if cluster is None:
            label = previous or "S1"
        else:
            label = names.setdefault(cluster, f"S{len(names) + 1}")
        labels.append(label)
        previous = label
    return labels

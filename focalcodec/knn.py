"""kNN voice conversion (kNN-VC, as upstream FocalCodec): nearest rows of a matching set by cosine distance.

Every frame of the source is replaced by the mean of its ``topk`` nearest rows of a *matching set*, frames of
the target speaker in the same feature space (e.g. decompressed features ``sig_to_qfeats(ref)[0]``). Frames
are matched one by one, so converting a stream chunk by chunk gives the offline result.
"""

import torch

__all__ = ["cosine_distance", "knn", "knn_indices"]


def cosine_distance(queries: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``1 - cos(q, t)`` for every query and row, computed as upstream through Euclidean distances.

    ``d = 1 - ((|q|² + |t|² - |q - t|²) / 2) / sqrt(|q|² |t|²)``, with ``|q - t|`` from ``torch.cdist``. This
    carries ~1e-7 cancellation noise and has no epsilon (a zero vector gives NaN).

    Arguments
    ---------
    queries : (N, D)
    rows : (M, D)

    Returns
    -------
    (N, M) distances in [0, 2].
    """
    query_sq = queries.pow(2).sum(dim=-1, keepdim=True)  # (N, 1)
    row_sq = rows.pow(2).sum(dim=-1)[None]  # (1, M)
    dot = (query_sq + row_sq - torch.cdist(queries, rows).pow(2)) / 2
    return 1 - dot / (query_sq * row_sq).sqrt()


def knn_indices(
    input: torch.Tensor, matching_set: torch.Tensor, topk: int = 4, num_splits: int = 1
) -> torch.Tensor:
    """Indices of the ``k = min(topk, M)`` rows of ``matching_set`` nearest to each input, nearest first.

    With ``num_splits > 1`` the set is searched in consecutive pieces of ``M // num_splits`` rows (a remainder
    forms one more piece) to bound memory, and the best ``k`` of the pieces' candidates are kept: the same
    neighbours as one search, up to ties.

    Arguments
    ---------
    input : (..., D) vectors, e.g. (B, T, D) frames.
    matching_set : (M, D) rows to choose from.
    topk : neighbours per vector.
    num_splits : pieces the set is searched in, at most M.

    Returns
    -------
    (..., k) int64 row indices in increasing cosine distance.
    """
    queries = input.reshape(-1, input.shape[-1])
    num_rows = matching_set.shape[0]
    distances, indices, offset = [], [], 0
    for piece in matching_set.split(num_rows // num_splits):
        nearest = cosine_distance(queries, piece).topk(min(topk, piece.shape[0]), dim=-1, largest=False)
        distances.append(nearest.values)
        indices.append(nearest.indices + offset)
        offset += piece.shape[0]
    best = torch.cat(distances, dim=-1).topk(min(topk, num_rows), dim=-1, largest=False).indices
    return torch.cat(indices, dim=-1).gather(-1, best).reshape(*input.shape[:-1], best.shape[-1])


def knn(input: torch.Tensor, matching_set: torch.Tensor, topk: int = 4, num_splits: int = 1) -> torch.Tensor:
    """The neighbours of :func:`knn_indices` themselves: (..., D) -> (..., k, D), nearest first.

    kNN-VC replaces every vector by their mean, ``knn(...).mean(dim=-2)``.
    """
    return matching_set[knn_indices(input, matching_set, topk, num_splits)]

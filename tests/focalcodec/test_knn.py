"""kNN voice conversion as upstream: the ``focalcodec_stream_knn.pt`` vector (distances, neighbours and their
order, split search, offline and streaming conversion) and the search itself."""

import pytest
import torch
import torch.nn.functional as F
from helpers.reference import assert_close, load_reference, reference_codec

from focalcodec.codec import FocalCodec
from focalcodec.knn import cosine_distance, knn, knn_indices
from focalcodec.streaming import CodecStream


@pytest.fixture(scope="module")
def knn_ref() -> tuple[FocalCodec, dict]:
    return reference_codec("focalcodec_stream_knn")


def test_reference_search(knn_ref) -> None:
    model, ref = knn_ref
    inputs, out = ref["inputs"], ref["outputs"]
    matching_set, topk, num_splits = inputs["matching_set"], inputs["topk"], inputs["num_splits"]
    with torch.no_grad():
        assert_close(model.sig_to_qfeats(inputs["ref_sig"])[0], out["matching_set_from_ref_sig"])
        toks = model.sig_to_toks(inputs["sig"])
        qfeats = model.toks_to_qfeats(toks)
    assert torch.equal(toks, out["toks"])
    assert_close(qfeats, out["qfeats"])
    qfeats = out["qfeats"]  # the reference's own intermediate input from here on
    assert_close(cosine_distance(qfeats.flatten(end_dim=-2), matching_set), out["cosine_distance"])
    assert torch.equal(knn_indices(qfeats, matching_set, topk), out["knn_idx"])
    assert torch.equal(knn_indices(qfeats, matching_set, topk, num_splits), out["knn_idx"])
    neighbors = model.knn(qfeats, matching_set, topk=topk)
    assert neighbors.shape == (1, 32, 4, 64)
    assert torch.equal(neighbors, out["knn_neighbors"])
    assert torch.equal(
        model.knn(qfeats, matching_set, topk=topk, num_splits=num_splits), out["knn_neighbors_split"]
    )
    assert_close(neighbors.mean(dim=-2), out["vc_feats"])


def test_reference_conversion(knn_ref) -> None:
    model, ref = knn_ref
    inputs, out = ref["inputs"], ref["outputs"]
    matching_set, topk, num_splits = inputs["matching_set"], inputs["topk"], inputs["num_splits"]
    toks = out["toks"]
    with torch.no_grad():
        vc = model.toks_to_sig(toks, matching_set=matching_set, topk=topk)
        vc_split = model.toks_to_sig(toks, matching_set=matching_set, topk=topk, num_splits=num_splits)
        from_feats = model.feats_to_sig(out["qfeats"], matching_set=matching_set, topk=topk)
        from_codes = model.codes_to_sig(model.toks_to_codes(toks), matching_set=matching_set, topk=topk)
    assert vc.shape == (1, 15360)
    for rec in (vc, from_feats, from_codes):
        assert_close(rec, out["vc_rec_sig"])
    assert_close(vc_split, out["vc_rec_sig_split"])


def test_reference_streaming_conversion(knn_ref) -> None:
    """Upstream ``test_online``: each chunk's tokens decoded with the matching set, states threaded."""
    model, ref = knn_ref
    inputs, out = ref["inputs"], ref["outputs"]
    matching_set, topk = inputs["matching_set"], inputs["topk"]
    enc = comp = decomp = dec = ()
    toks, recs = [], []
    with torch.no_grad():
        for chunk in inputs["sig"].split(model.chunk_size, dim=-1):
            toks_i, enc, comp = model.sig_to_toks(chunk, enc, comp, return_state=True)
            rec_i, decomp, dec = model.toks_to_sig(
                toks_i, decomp, dec, matching_set=matching_set, topk=topk, return_state=True
            )
            toks.append(toks_i)
            recs.append(rec_i)
    assert torch.equal(torch.cat(toks, dim=1), out["stream_vc_toks"])
    assert len(recs) == len(out["stream_vc_rec_sig_chunks"])
    for rec, expected in zip(recs, out["stream_vc_rec_sig_chunks"], strict=True):
        assert_close(rec, expected)
    assert_close(torch.cat(recs, dim=1), out["stream_vc_rec_sig"])
    assert_close(torch.cat(recs, dim=1), out["vc_rec_sig"])  # streaming VC is offline VC
    # the same through the helper
    stream = CodecStream(model, matching_set=matching_set, topk=topk)
    pushed = [stream.push(piece) for piece in inputs["sig"].split(3000, dim=-1)] + [stream.flush()]
    assert_close(torch.cat([p.sig for p in pushed], dim=1), out["vc_rec_sig"])


def test_search_properties() -> None:
    """Neighbours in increasing cosine distance (scale-free), the split search finds the same ones, ``k`` is
    capped at the set size, and any leading shape works."""
    torch.manual_seed(0)
    matching_set = torch.randn(30, 8)
    queries = torch.randn(2, 5, 8)
    similarity = F.normalize(queries, dim=-1) @ F.normalize(matching_set, dim=-1).T
    expected = similarity.topk(4, dim=-1).indices  # the most similar first
    assert torch.equal(knn_indices(queries, matching_set, 4), expected)
    assert torch.equal(knn_indices(3.0 * queries, 0.5 * matching_set, 4), expected)
    for num_splits in (2, 7, 30):  # 7: pieces of 4 rows and a remainder of 2
        assert torch.equal(knn_indices(queries, matching_set, 4, num_splits), expected)
    assert knn(queries, matching_set, topk=100).shape == (2, 5, 30, 8)  # capped at M
    assert knn(queries[0, 0], matching_set, topk=3).shape == (3, 8)
    distances = cosine_distance(queries.flatten(end_dim=-2), matching_set)
    assert_close(distances, 1 - similarity.flatten(end_dim=-2))


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((torch.randn(1, 5, 64), torch.randn(5, 32)), ValueError, r"matching_set.*\(M, 64\)"),
        ((torch.randn(1, 5, 64), torch.randn(5, 64), 0), ValueError, "topk"),
        ((torch.randn(1, 5, 64), torch.randn(5, 64), 2, 6), ValueError, "num_splits"),
        ((torch.randint(0, 3, (1, 5, 64)), torch.randn(5, 64)), ValueError, "floating-point"),
    ],
)
def test_knn_input_checks(args: tuple, error: type, message: str) -> None:
    model = FocalCodec(**load_reference("focalcodec_e2e")["config"])
    with pytest.raises(error, match=message):
        model.knn(*args)

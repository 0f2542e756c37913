"""Product-quantised target attention: exactness limits, the LUT identity, weights, masks."""

from __future__ import annotations

import pytest
import torch

from relkd.nets.pq_attention import MultiViewPQ, exact_view_scores, topk_recall
from relkd.nets.product_quantizer import ProductQuantizer


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [4, 6])  # K == N, and K > N (spare centroids are copies)
def test_codebook_at_least_as_large_as_data_is_exact(bits: int) -> None:
    x = _randn(16, 8)
    pq = ProductQuantizer(8, subquantizers=4, bits=bits).fit(x)
    assert not pq.codebooks.isnan().any()
    codes = pq.encode(x)
    assert codes.shape == (16, 4) and codes.dtype == torch.long
    assert torch.equal(pq.decode(codes), x)
    q = _randn(8, 8, seed=1)
    approx = pq.pq_scores(pq.lookup_table(q), codes)
    assert topk_recall(approx, q @ x.T, k=5) == 1.0


def test_recall_rises_with_codebook_size() -> None:
    recalls = {1: 0.0, 3: 0.0, 6: 0.0, 9: 0.0}  # 2^9 = 512 centroids >= the 300 vectors
    seeds = (0, 1, 2)
    for seed in seeds:
        x, q = _randn(300, 16, seed=seed), _randn(32, 16, seed=100 + seed)
        for bits in recalls:
            pq = ProductQuantizer(16, subquantizers=4, bits=bits).fit(x, seed=seed)
            approx = pq.pq_scores(pq.lookup_table(q), pq.encode(x))
            recalls[bits] += topk_recall(approx, q @ x.T, k=10) / len(seeds)
    # measured means ≈ 0.10, 0.34, 0.68: each step is far above float noise
    assert recalls[1] + 0.1 < recalls[3] < recalls[6] - 0.1
    assert recalls[6] > 0.5
    assert recalls[9] == 1.0  # as many centroids as vectors: PQ attention is exact attention


def test_fit_is_deterministic_given_seed() -> None:
    x = _randn(200, 16)
    a = ProductQuantizer(16, 4, 3).fit(x, seed=7)
    b = ProductQuantizer(16, 4, 3).fit(x, seed=7)
    assert torch.equal(a.codebooks, b.codebooks)


def test_lut_scores_equal_inner_products_with_decoded_vectors() -> None:
    x, q = _randn(100, 12), _randn(5, 12, seed=1)
    pq = ProductQuantizer(12, subquantizers=3, bits=3).fit(x)
    codes = pq.encode(x)
    lut = pq.lookup_table(q)
    assert lut.shape == (5, 3, 8)
    expected = q @ pq.decode(codes).T
    torch.testing.assert_close(pq.pq_scores(lut, codes), expected)
    # per-row codes (each row its own history), stored compactly as uint8
    per_row = codes.view(5, 20, 3).to(torch.uint8)
    rows = torch.stack([q[b] @ pq.decode(per_row[b]).T for b in range(5)])
    torch.testing.assert_close(pq.pq_scores(lut, per_row), rows)


def test_exact_view_scores_matches_loop() -> None:
    b, n, v, d = 2, 5, 3, 4
    target, history = _randn(b, v, d), _randn(b, n, v, d, seed=1)
    weights = torch.tensor([0.5, -1.0, 2.0])
    ref = torch.zeros(b, n)
    for i in range(b):
        for j in range(n):
            for k in range(v):
                ref[i, j] += weights[k] * torch.dot(target[i, k], history[i, j, k])
    torch.testing.assert_close(exact_view_scores(target, history, weights), ref)


def test_multiview_scores_follow_weights() -> None:
    b, n, v, d = 3, 40, 3, 8
    target, history = _randn(b, v, d), _randn(b, n, v, d, seed=1)
    mv = MultiViewPQ(v, d, subquantizers=2, bits=3)
    assert not mv.fitted
    mv.fit(history.reshape(-1, v, d))
    assert mv.fitted
    weights = torch.tensor([1.0, 0.0, 2.0])
    codes = mv.encode(history)
    assert codes.shape == (b, n, v, 2)
    scores = mv.scores(target, codes, weights)
    decoded = torch.stack([mv.quantizers[i].decode(codes[..., i, :]) for i in range(v)], -2)
    torch.testing.assert_close(scores, exact_view_scores(target, decoded, weights))
    # a zero-weighted view is ignored: replacing its vectors changes nothing
    other = history.clone()
    other[:, :, 1] = _randn(b, n, d, seed=2) * 10
    assert not torch.equal(mv.encode(other), codes)
    torch.testing.assert_close(mv.quantized_scores(target, other, weights), scores)
    # shared codes (N, V, M) score every row against the same pool
    pool = codes[0]
    torch.testing.assert_close(mv.scores(target, pool, weights)[0], scores[0])


def test_state_dict_round_trip_and_unfitted_errors() -> None:
    x = _randn(64, 8)
    fresh = ProductQuantizer(8, 2, 3)
    with pytest.raises(RuntimeError, match="before fit"):
        fresh.encode(x)
    with pytest.raises(RuntimeError, match="before fit"):
        fresh.lookup_table(x)
    pq = ProductQuantizer(8, 2, 3).fit(x)
    fresh.load_state_dict(pq.state_dict())
    assert bool(fresh.fitted)
    assert torch.equal(fresh.encode(x), pq.encode(x))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dim": 10, "subquantizers": 4}, "subquantizers"),
        ({"dim": 16, "bits": 0}, "bits"),
        ({"dim": 16, "bits": 17}, "bits"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ProductQuantizer(**kwargs)


def test_topk_recall_respects_mask() -> None:
    exact = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    assert topk_recall(exact, exact, k=3) == 1.0
    # approx puts padding (positions 0, 1) on top; masked, they are never chosen
    approx = torch.tensor([[9.0, 8.0, 0.5, 2.0, 1.0, 3.0]])
    mask = torch.tensor([[False, False, True, True, True, True]])
    # exact top-2 of the valid {2..5} is {2, 3}; approx top-2 is {5, 3}: one hit of two
    assert topk_recall(approx, exact, k=2, mask=mask) == pytest.approx(0.5)
    # without the mask both sides' top-2 is {0, 1}
    assert topk_recall(approx, exact, k=2) == 1.0
    # fewer valid positions than k: divide by the valid count, and all-padding rows drop out
    few = torch.tensor([[False, False, False, False, True, True], [False] * 6])
    two_rows = torch.cat([approx, approx])
    assert topk_recall(two_rows, torch.cat([exact, exact]), k=4, mask=few) == 1.0


def test_small_work_blocks_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    x, q = _randn(90, 8), _randn(4, 8, seed=1)
    pq = ProductQuantizer(8, subquantizers=2, bits=3).fit(x)
    codes, lut = pq.encode(x), pq.lookup_table(q)
    shared, per_row = pq.pq_scores(lut, codes), pq.pq_scores(lut, codes[:88].view(4, 22, 2))
    # blocks of a few rows: encode, fit and both scoring layouts loop over many chunks
    monkeypatch.setattr("relkd.nets.product_quantizer._CHUNK_ELEMENTS", 40)
    assert torch.equal(pq.encode(x), codes)
    refit = ProductQuantizer(8, subquantizers=2, bits=3).fit(x)
    assert torch.equal(refit.codebooks, pq.codebooks)
    torch.testing.assert_close(pq.pq_scores(lut, codes), shared)
    torch.testing.assert_close(pq.pq_scores(lut, codes[:88].view(4, 22, 2)), per_row)

import numpy as np
import pytest
from keras import ops

from tf_sparsity import _backend
from tf_sparsity import masks

pytestmark = pytest.mark.core


@pytest.mark.parametrize("k", [0, 1, 7, 50, 99, 100])
def test_prune_lowest_removes_exactly_k_lowest(rng, k):
    scores = rng.normal(size=(10, 10)).astype("float32")
    mask = ops.convert_to_numpy(masks.prune_lowest(scores, k))
    assert mask.shape == (10, 10)
    assert int((mask == 0).sum()) == k
    if 0 < k < 100:
        assert scores[mask == 0].max() <= scores[mask == 1].min()


def test_prune_lowest_is_exact_with_ties_and_compiled(rng):
    scores = np.zeros(1000, "float32")
    scores[::3] = 1.0  # 666 tied zeros, 334 tied ones
    compiled = _backend.jit_compile(lambda s, k: masks.prune_lowest(s, k))
    for k in (0, 10, 500, 666, 700, 1000):
        mask = ops.convert_to_numpy(compiled(scores, np.int32(k)))
        assert int((mask == 0).sum()) == k


def test_prune_lowest_jointly_ranks_tensors_together():
    a = np.array([[0.1, 5.0], [4.0, 0.2]], "float32")
    b = np.array([3.0, 0.05, 2.0], "float32")
    ma, mb = [ops.convert_to_numpy(m) for m in masks.prune_lowest_jointly([a, b], 3)]
    np.testing.assert_array_equal(ma, [[0, 1], [1, 0]])
    np.testing.assert_array_equal(mb, [1, 0, 1])


def test_num_to_prune_rounds_in_double_precision():
    assert masks.num_to_prune(0.9, 235_200) == 211_680
    assert masks.num_to_prune(0.5, 3) == 2
    assert masks.num_to_prune(0.9, 25_557_032) == round(0.9 * 25_557_032)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prune_lowest_equals_a_stable_sort(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=2000).astype("float32")
    scores[rng.integers(0, 2000, 300)] = 0.0  # ties, and -0.0 / +0.0
    scores[:50] = -0.0
    scores[rng.integers(0, 2000, 100)] = -1.0
    scores[rng.integers(0, 2000, 5)] = np.float32(3.4e38)
    scores[rng.integers(0, 2000, 5)] = np.float32(1e-40)  # subnormal
    compiled = _backend.jit_compile(lambda s, k: masks.prune_lowest(s, k))
    order = np.argsort(scores, kind="stable")
    for k in (0, 1, 49, 50, 400, 1999, 2000):
        expected = np.ones(2000, "float32")
        expected[order[:k]] = 0.0
        mask = ops.convert_to_numpy(compiled(scores, np.int32(k)))
        # -0.0 and +0.0 compare equal in numpy but not by bit pattern; both
        # orders are valid, so compare the multiset of pruned scores.
        assert int((mask == 0).sum()) == k
        np.testing.assert_array_equal(np.sort(scores[mask == 0]), np.sort(scores[expected == 0]))


def test_kth_smallest_key_matches_numpy(rng):
    values = rng.normal(size=5000).astype("float32") * 1e3
    keys = masks._ordered_keys(values)
    ordered = np.sort(ops.convert_to_numpy(keys))
    for k in (1, 2, 2500, 5000):
        assert int(ops.convert_to_numpy(masks.kth_smallest_key(keys, np.int32(k)))) == ordered[k - 1]

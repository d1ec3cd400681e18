import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from waferflow.data.resize import resize_grid


@settings(max_examples=50, deadline=None)
@given(
    grid=st.tuples(st.integers(2, 120), st.integers(2, 120)).flatmap(
        lambda s: arrays(np.uint8, s, elements=st.integers(0, 2))
    ),
    size=st.tuples(st.integers(8, 96), st.integers(8, 96)),
)
def test_resize_keeps_die_codes_exact(grid, size):
    out = resize_grid(grid, size)
    assert out.shape == size
    assert out.dtype == np.uint8
    assert set(np.unique(out)) <= set(np.unique(grid))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_integer_upsample_then_downsample_is_identity(factor):
    rng = np.random.default_rng(factor)
    grid = rng.integers(0, 3, size=(13, 21)).astype(np.uint8)
    up = resize_grid(grid, (13 * factor, 21 * factor))
    assert np.array_equal(up[::factor, ::factor], grid)
    assert np.array_equal(resize_grid(up, (13, 21)), grid)


def test_nearest_neighbour_values():
    grid = np.array([[0, 1], [2, 1]], np.uint8)
    assert resize_grid(grid, (4, 4)).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]]
    masks = np.array([[0, 8], [3, 0]], np.uint8)
    assert set(np.unique(resize_grid(masks, (7, 5)))) == {0, 3, 8}


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        resize_grid(np.ones(5, np.uint8), (4, 4))
    with pytest.raises(ValueError, match="non-empty"):
        resize_grid(np.ones((0, 3), np.uint8), (4, 4))

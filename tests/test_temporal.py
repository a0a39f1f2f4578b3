"""Edge cases of the temporal transformers."""

from __future__ import annotations

import numpy as np
import pytest

from cadence.pipelines import Downsample, SlidingWindow


def windows(n, length, stride=None, **kw):
    return [(w.start, list(w)) for w in SlidingWindow(length=length, stride=stride, **kw).applied(range(n))]


def test_stride_equal_to_length_tiles_the_stream():
    assert windows(8, 4, 4) == [(0, [0, 1, 2, 3]), (4, [4, 5, 6, 7])]


def test_overlapping_windows():
    assert windows(8, 4, 2) == [(0, [0, 1, 2, 3]), (2, [2, 3, 4, 5]), (4, [4, 5, 6, 7])]


def test_partial_tail_is_emitted_once():
    assert windows(10, 4, 4) == [(0, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (8, [8, 9])]
    assert windows(9, 4, 2)[-1] == (6, [6, 7, 8])
    assert windows(10, 4, 4, partial=False) == [(0, [0, 1, 2, 3]), (4, [4, 5, 6, 7])]


def test_stream_shorter_than_a_window():
    assert windows(3, 90, 90) == [(0, [0, 1, 2])]
    assert windows(3, 90, 90, partial=False) == []


def test_stride_longer_than_length_skips_elements():
    assert windows(12, 2, 5) == [(0, [0, 1]), (5, [5, 6]), (10, [10, 11])]
    assert windows(13, 2, 5) == [(0, [0, 1]), (5, [5, 6]), (10, [10, 11])]  # 12 lies between windows


def test_empty_stream():
    assert windows(0, 4, 2) == []
    assert list(Downsample(factor=3).applied([])) == []


def test_windows_as_arrays():
    (w,) = SlidingWindow(length=3, as_array=True).applied([np.ones(2) * i for i in range(3)])
    assert isinstance(w.elements, np.ndarray) and w.elements.shape == (3, 2)
    assert w.stop == 3


def test_downsample():
    assert list(Downsample(factor=1).applied(range(3))) == [0, 1, 2]
    assert list(Downsample(factor=4).applied(range(10))) == [0, 4, 8]
    with pytest.raises(ValueError, match="Downsample: factor"):
        list(Downsample(factor=0).applied(range(3)))

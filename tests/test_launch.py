"""kaffa.launch: the host-side pieces the device backends share."""

from __future__ import annotations

import numpy as np

from kaffa.launch import TableCache, broadcast_geometry


def test_table_cache_uploads_each_value_once_and_keeps_the_previous_generation():
    uploads = []

    def upload(table):
        uploads.append(table.tobytes())
        return object()  # stands for a device array

    cache = TableCache(upload, limit=2)
    a = cache(np.array([1, 2], np.int32))
    assert cache(np.array([1, 2], np.int32)) is a and len(uploads) == 1
    assert cache(np.array([1, 2], np.int64)) is not a  # same values, other dtype: another table
    b = cache(np.array([3], np.int32))  # the cache was full: a new generation starts
    assert a in cache._old.values()  # still referenced, so its device buffer is not reused yet
    assert cache(np.array([3], np.int32)) is b and len(uploads) == 3


def test_broadcast_geometry_collapses_contiguous_dims():
    g = broadcast_geometry((32, 64, 7, 7), (32, 64, 7, 7), (1, 64, 1, 1))
    assert g.tolist() == [3, 32, 64, 49, 3136, 49, 1, 0, 1, 0]
    assert broadcast_geometry((4, 5), (4, 5), (4, 5)).tolist() == [1, 20, 1, 1]

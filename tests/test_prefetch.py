"""The batch prefetcher: the same values in the same order as calling make(step) directly."""

import pytest

from videomae_np.data.prefetch import Prefetcher


def test_prefetched_values_equal_direct_calls_in_order_and_out_of_order():
    calls = []

    def make(step):
        calls.append(step)
        return step * step

    with Prefetcher(make, start=3) as p:
        assert [p.get(s) for s in (3, 4, 5)] == [9, 16, 25]
        assert p.get(10) == 100            # a jump (a resumed run) is computed, then prefetching goes on
        assert p.get(11) == 121
    assert calls[:3] == [3, 4, 5] and 10 in calls and 11 in calls


def test_an_error_in_the_worker_is_raised_by_the_get_of_that_step():
    def make(step):
        if step == 2:
            raise ValueError("bad batch 2")
        return step

    with Prefetcher(make, start=0) as p:
        assert p.get(0) == 0 and p.get(1) == 1
        with pytest.raises(ValueError, match="bad batch 2"):
            p.get(2)


def test_disabled_prefetcher_calls_make_on_the_caller():
    p = Prefetcher(lambda s: -s, enabled=False)
    assert p.get(4) == -4
    p.close()

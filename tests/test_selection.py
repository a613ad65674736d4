import math

import torch

from runtime.sage.selection import margin, select, select_family, spearman


def test_top_k_and_fraction_by_hand():
    s = torch.tensor([0.1, -5.0, 2.0, 0.0, 3.0])
    assert select_family(s, 2, None) == [1, 4]
    # total |s| = 10.1: 5.0 and 3.0 carry at least 25% of it, 2.0 does not
    assert select_family(s, None, 0.25) == [1, 4]
    assert select_family(torch.zeros(3), None, 0.1) == []


def test_selection_is_the_union_over_families():
    io = torch.tensor([9.0, 1.0, 0.0, 0.0])  # candidate 0 carries io
    s = torch.tensor([0.0, 0.5, 4.0, 0.1])  # candidate 2 carries s
    assert set(select({"io": io, "s": s}, 1, None)) == {0, 2}
    assert select({"io": io, "s": s}, 1, None)[0] == 0  # 0.9 of its family beats 0.87
    assert margin({"io": io, "s": s}, [0, 2], 1) == [1]


def test_spearman_by_hand():
    assert math.isclose(spearman([1, 2, 3], [10, 20, 30]), 1.0)
    assert math.isclose(spearman([1, 2, 3], [3, 2, 1]), -1.0)
    assert math.isclose(spearman([1, 2, 3, 4], [1, 3, 2, 4]), 0.8)
    assert math.isnan(spearman([1, 1], [2, 3]))

import math

import torch

from runtime.sage.selection import interleave, margin, margin_pools, select, select_family, select_pools, spearman


def test_top_k_and_fraction_by_hand():
    s = torch.tensor([0.1, -5.0, 2.0, 0.0, 3.0])
    assert select_family(s, 2, None) == [1, 4]
    # total |s| = 10.1: 5.0 and 3.0 carry at least 25% of it, 2.0 does not
    assert select_family(s, None, 0.25) == [1, 4]
    assert select_family(torch.zeros(3), None, 0.1) == []


def test_top_k_per_family_is_the_union_over_families():
    io = torch.tensor([9.0, 1.0, 0.0, 0.0])  # candidate 0 carries io
    s = torch.tensor([0.0, 0.5, 4.0, 0.1])  # candidate 2 carries s
    assert set(select({"io": io, "s": s}, 1, None, per_family=True)) == {0, 2}
    assert select({"io": io, "s": s}, 1, None, per_family=True)[0] == 0  # 0.9 of its family beats 0.87
    assert margin({"io": io, "s": s}, [0, 2], 1) == [1]


def test_top_k_is_k_in_total_with_the_families_interleaved():
    io = torch.tensor([9.0, 8.0, 7.0, 0.0, 0.0])  # io is spread over 0, 1, 2
    s = torch.tensor([0.0, 0.0, 0.0, 5.0, 0.0])  # s lives at 3 alone
    fams = {"io": io, "s": s}
    assert select(fams, 1, None) == [3]  # s's best carries all of its family (io's 9/24)
    assert set(select(fams, 2, None)) == {0, 3}  # one round: each family's best
    assert set(select(fams, 3, None)) == {0, 3, 1}  # s has nothing more: io's second best
    assert len(select(fams, 5, None)) == 5  # what no family scores fills the rest
    assert interleave(fams, 9) == [3, 0, 1, 2, 4]  # never more than there are candidates
    assert select(fams, None, 0.3) == select(fams, None, 0.3, per_family=True)  # a fraction is per family anyway


def test_residual_streams_are_ranked_apart_with_their_own_budget():
    scores = {"cf": torch.tensor([100.0, 90.0, 1.0, 2.0, 0.5])}  # 0, 1: residual streams; 2-4 sublayers
    residual, sublayer = [0, 1], [2, 3, 4]
    assert select(scores, 2, None) == [0, 1]  # ranked together, the streams take the whole budget
    assert select_pools(scores, [sublayer, residual], 2, None) == [[3, 2], [0, 1]]
    assert margin_pools(scores, [sublayer, residual], [[3], [0]], 1) == [2, 1]


def test_spearman_by_hand():
    assert math.isclose(spearman([1, 2, 3], [10, 20, 30]), 1.0)
    assert math.isclose(spearman([1, 2, 3], [3, 2, 1]), -1.0)
    assert math.isclose(spearman([1, 2, 3, 4], [1, 3, 2, 4]), 0.8)
    assert math.isnan(spearman([1, 1], [2, 3]))

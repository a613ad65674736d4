import math

import torch

from runtime.task.metric import task_metric


def test_single_tokens_give_the_logit_difference():
    logits = torch.tensor([[1.0, 4.0, -2.0], [0.5, 0.0, 3.0]])
    assert torch.allclose(task_metric(logits, [(1,), (2,)], [(2,), (0,)]), torch.tensor([6.0, 2.5]))


def test_token_sets_give_the_log_probability_mass_difference():
    logits = torch.tensor([[0.0, math.log(3.0), math.log(2.0), 0.0]])
    probs = logits.softmax(-1)[0]
    expected = math.log(probs[1] + probs[2]) - math.log(probs[0] + probs[3])  # log(5/2)
    got = task_metric(logits, [(1, 2)], [(0, 3)])
    assert math.isclose(got.item(), expected, rel_tol=1e-6) and math.isclose(expected, math.log(2.5), rel_tol=1e-6)


def test_rows_may_mix_set_sizes_and_gradients_flow():
    logits = torch.zeros(2, 5, requires_grad=True)
    m = task_metric(logits, [(1,), (1, 2, 3)], [(0,), (4,)])
    assert torch.allclose(m.detach(), torch.tensor([0.0, math.log(3.0)]))
    m.sum().backward()
    assert logits.grad[0, 1] == 1 and logits.grad[0, 0] == -1

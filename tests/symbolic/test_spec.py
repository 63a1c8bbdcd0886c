import torch

from metacompose.symbolic.spec import BoxDomain, LinfBallDomain, domain_boxes, per_output


def test_linf_ball_boxes_contain_the_ball():
    dom = LinfBallDomain(radius=0.1, points=((0.3, -0.7),))
    lo, hi = domain_boxes(dom)
    p = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    assert bool((lo <= p - 0.1).all()) and bool((hi >= p + 0.1).all())
    lo2, _ = domain_boxes(LinfBallDomain(radius=0.5), points=torch.zeros(4, 3))
    assert lo2.shape == (4, 3)


def test_box_and_broadcast():
    lo, hi = domain_boxes(BoxDomain(lower=(-1.0, 0.0), upper=(1.0, 2.0)))
    assert lo.tolist() == [[-1.0, 0.0]] and hi.tolist() == [[1.0, 2.0]]
    assert per_output((0.5,), 3, "x") == [0.5, 0.5, 0.5]

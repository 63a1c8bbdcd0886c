import pytest

from metacompose.modules.space import Space


def test_int_shape_is_promoted_and_round_trips():
    s = Space("vec", 40)
    assert s.shape == (40,) and s.dim == 40 and s.numel == 40
    assert Space.from_json(s.to_json()) == s
    assert Space("image", (1, 28, 28)).numel == 784


@pytest.mark.parametrize(
    "kind, shape, match",
    [("tensor", 3, "kind"), ("vec", 0, "positive"), ("image", (28, 28), r"\(C, H, W\)")],
)
def test_bad_spaces_are_rejected(kind, shape, match):
    with pytest.raises(ValueError, match=match):
        Space(kind, shape)


def test_spaces_compare_by_kind_and_shape():
    assert Space("vec", 4) != Space("embedding", 4)
    assert Space("vec", 4) != Space("vec", 5)

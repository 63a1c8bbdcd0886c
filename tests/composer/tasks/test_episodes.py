"""Episodes checked against the images they must come from: each image encodes (class, sample)."""

import pytest
import torch

from metacompose.tasks.episodes import sample_episodes

C, S, H = 12, 9, 4


def coded_images() -> torch.Tensor:
    """``(C, S, 1, H, H)`` uint8 whose pixel (0, 0) is the class and pixel (0, 1) the sample."""
    img = torch.zeros(C, S, 1, H, H, dtype=torch.uint8)
    img[:, :, 0, 0, 0] = torch.arange(C).view(C, 1)
    img[:, :, 0, 0, 1] = torch.arange(S).view(1, S)
    img[:, :, 0, 1, 0] = 255  # asymmetric mark: reveals rotations
    return img


def decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    v = (x[..., 0, 0, 0] * 255).round().long(), (x[..., 0, 0, 1] * 255).round().long()
    return v


@pytest.mark.parametrize("ways,shots,query", [(5, 1, 3), (3, 4, 5), (12, 2, 0)])
def test_episode_contents_match_brute_force(ways, shots, query):
    images = coded_images()
    classes = torch.arange(C)
    b = sample_episodes(images, classes, n_tasks=6, ways=ways, shots=shots, query=query,
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert b.support_x.shape == (6, ways * shots, 1, H, H) and b.support_x.dtype == torch.float32
    assert b.query_x.shape == (6, ways * query, 1, H, H)
    assert b.support_y.dtype == torch.int64 and b.support_y.shape == (6, ways * shots)
    for t in range(6):
        picked = b.info["classes"][t]
        assert len(set(picked.tolist())) == ways
        seen = set()
        for xs, ys, k in (
            (b.support_x[t], b.support_y[t], shots),
            (b.query_x[t], b.query_y[t], query),
        ):
            assert torch.bincount(ys, minlength=ways).tolist() == [k] * ways
            cls, smp = decode(xs)
            for i in range(len(ys)):
                assert cls[i].item() == picked[ys[i]].item()  # image's class is the label's class
                seen.add((cls[i].item(), smp[i].item()))
        assert len(seen) == ways * (shots + query)  # no sample twice (support and query disjoint)


def test_episodes_relabel_and_use_only_split_classes():
    images = coded_images()
    classes = torch.tensor([1, 4, 6, 7, 10, 11])
    b = sample_episodes(images, classes, n_tasks=200, ways=5, shots=1, query=1,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert set(b.info["classes"].unique().tolist()) == set(classes.tolist())
    # label 0 is a different class from task to task: the relabelling is random
    assert len(set(b.info["classes"][:, 0].tolist())) == len(classes)


def test_episodes_deterministic_in_generator():
    images = coded_images()
    make = lambda s: sample_episodes(images, torch.arange(C), n_tasks=4, ways=5, shots=2, query=3,  # noqa: E731
                                     generator=torch.Generator().manual_seed(s))  # fmt: skip
    a, b, c = make(7), make(7), make(8)
    torch.testing.assert_close(a.support_x, b.support_x, atol=0, rtol=0)
    assert torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)


def test_rotation_augmentation_rotates_whole_classes():
    images = coded_images()
    b = sample_episodes(images, torch.arange(C), n_tasks=50, ways=5, shots=2, query=2,
                        generator=torch.Generator().manual_seed(0), rotate=True)  # fmt: skip
    marks = (b.support_x[:, :, 0] * 255).round().long()
    ups = marks[..., 1, 0] == 255  # mark in place: not rotated
    assert ups.any() and (~ups).any()
    for t in range(50):  # all images of one class share the rotation
        for lab in range(5):
            m = ups[t][b.support_y[t] == lab]
            assert m.all() or (~m).all()


def test_episode_errors():
    with pytest.raises(ValueError, match="this split has 6"):
        sample_episodes(coded_images(), torch.arange(6), n_tasks=1, ways=7, shots=1, query=1,
                        generator=torch.Generator())  # fmt: skip
    with pytest.raises(ValueError, match="shots"):
        sample_episodes(coded_images(), torch.arange(C), n_tasks=1, ways=2, shots=5, query=5,
                        generator=torch.Generator())  # fmt: skip

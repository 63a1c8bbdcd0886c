"""The last line ``train`` prints about a run's block restarts (``train_cmd.phases_said``)."""

from metacompose.cli.train_cmd import phases_said


def test_no_phases_say_nothing():
    assert phases_said([]) == ""


def test_restarts_and_the_polish_are_counted_apart():
    phases = [{"slot": "f", "kept": 3}, {"slot": "g", "kept": 0}]
    assert phases_said(phases) == " and 2 block-restart phases (1 took a restart)"
    kept = [*phases, {"slot": "p", "kept": 1}]
    assert phases_said(kept) == " and 3 block-restart phases (1 took a restart, the polish kept)"
    dropped = [*phases, {"slot": "p", "kept": 0}]
    assert phases_said(dropped).endswith("(1 took a restart, the polish not kept)")


def test_the_distil_is_counted_apart_too():
    phases = [{"slot": "f", "kept": 0}, {"slot": "g", "kept": 2}, {"slot": "p", "kept": 1},
              {"slot": "d", "kept": 3}]  # fmt: skip
    assert phases_said(phases) == (
        " and 4 block-restart phases (1 took a restart, the polish kept, the distil kept)"
    )
    phases[3] = {"slot": "d", "kept": 0}
    assert phases_said(phases).endswith("the polish kept, the distil not kept)")

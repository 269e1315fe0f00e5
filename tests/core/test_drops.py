"""Drop counts: one type, one rendering, phases kept apart by a prefix."""

import pytest

from fastdraft_dag.core.drops import Drops


def test_add_total_and_sorted_dict() -> None:
    drops = Drops()
    drops.add("truncated")
    drops.add("empty_response", 2)
    drops.add("truncated")
    drops.add("failed", 0)
    assert drops.total == 4
    assert drops["truncated"] == 2 and drops["never_seen"] == 0
    assert list(drops.as_dict().items()) == [("empty_response", 2), ("truncated", 2)]
    # first-seen order for writers that keep an existing JSON layout, zeros included
    assert list(drops.items()) == [("truncated", 2), ("empty_response", 2), ("failed", 0)]


def test_phases_prefix_each_reason() -> None:
    drops = Drops.phases(
        {"prompt": {"too_long": 3, "empty": 0}, "generation": Drops({"truncated": 1})}
    )
    assert drops.as_dict() == {"generation:truncated": 1, "prompt:too_long": 3}
    assert drops == Drops({"prompt:too_long": 3, "generation:truncated": 1})


@pytest.mark.parametrize(
    ("reason", "n", "match"),
    [
        ("", 1, "reason"),
        (None, 1, "reason"),
        ("x", -1, "'x'.*>= 0"),
        ("x", 1.5, "'x'"),
        ("x", True, "'x'"),
    ],
)
def test_bad_counts_are_refused_naming_the_reason(reason, n, match) -> None:
    with pytest.raises(ValueError, match=match):
        Drops().add(reason, n)

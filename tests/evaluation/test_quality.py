"""Quality gates as plain functions: known inputs, known answers."""

import pytest

from fastdraft_dag.distill.kd_dataset import kd_response_quality
from fastdraft_dag.evaluation.quality import acceptance_regressions


def test_kd_quality_counts_empty_and_truncated_per_task():
    rows = [
        {"task": "code", "response": "def f(): pass", "response_tokens": 5, "finish": "eos"},
        {"task": "code", "response": "   ", "response_tokens": 1, "finish": "eos"},
        {"task": "chat", "response": "Sure, here", "response_tokens": 128, "finish": "length"},
        {"task": "chat", "response": "Hi", "response_tokens": 0, "finish": "eos"},
        {"task": "chat", "response": "Done.", "response_tokens": 2, "finish": "eos"},
    ]
    q = kd_response_quality(rows)
    assert (q["rows"], q["empty"], q["truncated"]) == (5, 2, 1)
    assert q["truncated_fraction"] == 0.2
    assert q["by_task"]["code"] == {"rows": 2, "empty": 1, "truncated": 0}
    assert q["by_task"]["chat"] == {"rows": 3, "empty": 1, "truncated": 1}
    assert kd_response_quality([])["rows"] == 0


def test_acceptance_regressions_respect_the_tolerance():
    previous = {"code": 0.60, "chat": 0.50, "gone": 0.9}
    current = {"code": 0.57, "chat": 0.40, "new": 0.1}
    assert acceptance_regressions(current, previous, 0.05) == [
        {"task": "chat", "previous": 0.5, "current": 0.4, "drop": 0.1}
    ]
    assert [r["task"] for r in acceptance_regressions(current, previous, 0.0)] == ["chat", "code"]
    assert acceptance_regressions(current, previous, 0.2) == []
    with pytest.raises(ValueError, match="tolerance"):
        acceptance_regressions(current, previous, -0.1)

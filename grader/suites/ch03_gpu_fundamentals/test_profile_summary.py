"""Exercise 7: top_operators on event lists the judge makes (one entry per call)."""
import random

import pytest

from grader.suites._answers import number


def want(events, k):
    totals, calls = {}, {}
    for name, us in events:
        totals[name] = totals.get(name, 0.0) + us
        calls[name] = calls.get(name, 0) + 1
    everything = sum(totals.values())
    ranked = sorted(totals, key=lambda n: (-totals[n], n))[:k]
    return [(n, totals[n], calls[n], totals[n] / everything if everything else 0.0) for n in ranked]


def check(student, events, k, what):
    got = student.top_operators(events, k)
    expected = want(events, k)
    assert isinstance(got, (list, tuple)), f"{what}: return a list of (name, total_us, calls, share), got {got!r:.80}"
    names = [row[0] if isinstance(row, (list, tuple)) and row else row for row in got]
    assert names == [row[0] for row in expected], (
        f"{what}: operators {names!r:.200}, expected {[row[0] for row in expected]!r:.200}. Rank by the SUM of "
        f"self times over a name's calls (not its call count, not one call's time); equal totals by name")
    for row, (name, total, calls, share) in zip(got, expected):
        assert len(row) == 4, f"{what}: each row is (name, total_us, calls, share), got {row!r:.80}"
        assert abs(number(row[1], "total_us") - total) <= 1e-6 * max(1.0, total), (
            f"{what}: {name} total {row[1]!r:.20}, expected {total:.6g}")
        assert row[2] == calls, f"{what}: {name} was called {calls} times, got {row[2]!r:.20}"
        assert abs(number(row[3], "share") - share) <= 1e-9, (
            f"{what}: {name} share {row[3]!r:.20}, expected {share:.6f}: its total over the self time of ALL "
            f"events, not of the top k")


@pytest.mark.points(2)
def test_ranking(student):
    """a decode step's operators: a few slow calls against many fast ones, k below and above the count"""
    rng = random.Random(350)
    names = ["aten::mm", "aten::addmm", "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::cat",
             "aten::mul", "aten::add", "aten::as_strided", "aten::view", "aten::rms_norm"]
    events = []
    for _ in range(60):
        events.append(("aten::as_strided", rng.uniform(0.5, 2.0)))  # many cheap calls
        events.append(("aten::view", rng.uniform(0.5, 1.5)))
    for _ in range(12):
        events.append(("aten::mm", rng.uniform(200, 400)))  # few expensive ones
    for name in names[2:6] + names[8:]:
        for _ in range(rng.randint(1, 20)):
            events.append((name, rng.uniform(1, 90)))
    rng.shuffle(events)
    for k in (1, 3, 5, 20):
        check(student, events, k, f"{len(events)} events, k = {k}")


@pytest.mark.points(1)
def test_ties_and_edges(student):
    """equal totals ranked by name, zero-time events, an empty list"""
    events = [("b", 5.0), ("a", 2.0), ("c", 0.0), ("a", 3.0), ("d", 1.0)]
    check(student, events, 4, "ties (a and b both 5 us)")
    check(student, [("x", 0.0), ("y", 0.0)], 2, "only zero times")
    assert student.top_operators([], 5) == [], "no events: []"


@pytest.mark.points(1)
def test_share_is_of_all_events(student):
    """share divides by all events' self time, also when k cuts the list"""
    check(student, [("mm", 60.0), ("sdpa", 30.0), ("add", 6.0), ("cat", 4.0)], 2, "k = 2 of 4 operators")

"""How `make test` shares its two cores (`pytest -n 2 --dist loadgroup`).

Every file's tests stay together on one worker, as `--dist loadfile` would keep them: an
nbval notebook's cells share one kernel, and several files build an expensive
module-scoped fixture (a graded class, a course directory) that must be built once. The
exception is the negative controls: dozens of independent tests of up to a minute and a
half each, in one file. Kept together they would leave the other core idle for minutes at
the end of the run; spread one by one, they fill both cores.
"""

import pytest

SPREAD = {"tests/grader/test_controls.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        if path not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(path))

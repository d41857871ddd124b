"""How `make test` shares its two cores (`pytest -n 2`).

Every file's tests stay together on one worker, as `--dist loadfile` keeps them: an nbval
notebook's cells share one kernel, and several files build an expensive module-scoped
fixture (a graded class, a course directory) that must be built once. The exception is
the negative controls: dozens of independent tests of up to a minute each, in one
file. Kept together they leave the other core idle for minutes; spread one by one, they
fill both cores. (xdist's `loadgroup` cannot express this: nbval's cells take no group.)

Scopes are handed out with the most tests first (xdist's default order), so the single
controls come last and fill the gaps.
"""

from xdist.scheduler import LoadScopeScheduling

SPREAD = {"tests/grader/test_controls.py"}


class _FilesButSpreadControls(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return nodeid if path in SPREAD else path


def pytest_xdist_make_scheduler(config, log):
    return _FilesButSpreadControls(config, log)

"""Test distribution over both cores (pytest-xdist, `--dist loadgroup`).

Each file's tests stay together on one worker: a notebook's cells share one kernel, and a
module fixture (the demo class) is built once. Tests marked `independent` (each a whole
grading run on its own) are spread one by one, so no single worker gets all of them.
"""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("independent") is None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(str(item.path)))

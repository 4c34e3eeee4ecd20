"""pytest imports test modules by basename (rootdir-relative packages are not used
here), so two test files of the same name in different folders stop the whole run
at collection: caught here, with both paths named."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_basename_of_its_own() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        places[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: sorted(paths) for name, paths in places.items() if len(paths) > 1}
    assert clashes == {}

"""Every bad input of tests/bad_inputs.py (the README's table) ends in one line that says what was wrong and what
to do: the Python call raises the named error (a ZooError, outside the command line), and the command line
shows that one line with exit status 2 and no traceback."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tasks.cli_checks import DEBUG_ENV
from tests.bad_inputs import AREAS, CASES, markdown, trigger
from zoo.registry import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_line_without_a_traceback(case, tmp_path, monkeypatch):
    for name in DEBUG_ENV:  # the default: no full tracebacks asked for
        monkeypatch.delenv(name, raising=False)
    out = trigger(case, tmp_path)
    assert isinstance(out.error, case.error), f"{type(out.error).__name__}: {out.error}"
    if case.error is not SystemExit:
        assert isinstance(out.error, ZooError)  # the Python API raises the library's errors, never a bare one
    assert re.search(case.message, out.message), out.message
    assert out.single_line, f"a message of several lines: {out.error}"
    assert out.exit_code == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert f"error: {out.message}" in out.stderr.splitlines()


def test_the_table_lists_forty_distinct_cases_in_every_area():
    ids = Counter(c.id for c in CASES)
    assert len(CASES) >= 40 and max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert {c.area for c in CASES} == set(AREAS)
    table = markdown([("a|b", "cli", "x | y"), ("c", "data", "z")]).splitlines()
    assert table[2] == r"| `a\|b` | cli | x \| y |" and len(table) == 4  # header, rule, one row per case

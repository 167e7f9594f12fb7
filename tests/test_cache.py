"""Caches shared by runs (tokenizers, the Fréchet extractor, data features) are built once across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from zoo.io import cached

ROOT = Path(__file__).resolve().parents[1]

# Each process: miss the cache, "build" it slowly (counting builds in a shared file), return what it got.
BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from zoo.io import cached

    cache, counter, started = map(Path, sys.argv[1:4])

    def build():
        with open(counter, "a") as f:
            f.write("built\\n")
        time.sleep(1.0)  # long enough that the other process misses the cache too
        return "the value"

    started.with_name(started.name + sys.argv[4]).touch()
    while len(list(started.parent.glob(started.name + "*"))) < 2:  # both start missing the cache
        time.sleep(0.01)
    print(cached(cache, read=lambda p: p.read_text(), build=build, write=lambda v, f: f.write(v.encode())))
""")


def test_two_processes_that_miss_the_same_cache_build_it_once(tmp_path):
    cache, counter, started = tmp_path / "c" / "value.txt", tmp_path / "builds.txt", tmp_path / "started"
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(cache), str(counter), str(started), str(i)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == ["the value", "the value"]
    assert counter.read_text().splitlines() == ["built"]  # exactly one build
    assert cache.read_text() == "the value"


def test_an_unreadable_cache_file_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "value.json"
    path.write_text("{truncated")
    builds = []

    def build():
        builds.append(1)
        return {"a": 1}

    import json

    value = cached(path, read=lambda p: json.loads(p.read_text()), build=build,
                   write=lambda v, f: f.write(json.dumps(v).encode()))
    assert value == {"a": 1} and builds == [1]
    assert "rebuilding the unreadable cache file" in caplog.text
    assert cached(path, read=lambda p: json.loads(p.read_text()), build=build,
                  write=lambda v, f: f.write(b"")) == {"a": 1} and builds == [1]  # read, not built again

"""The load test's pure parts (/proc parsing, process trees, the summary) and the app's server-side savings.

The load test itself is `python -m skin_core bench --load N` (slow: a server and a browser);
tests/test_load.py is the slow correctness test with 20 sessions.
"""

import os

import numpy as np
import pytest

from skin_core import loadtest


def stat_line(pid, ppid, utime, stime, cutime=0, cstime=0, comm="python"):
    """A /proc/<pid>/stat line (52 fields) with times in clock ticks."""
    fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime), str(cutime), str(cstime)] + ["0"] * 35
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


def test_proc_stat_is_parsed_after_the_last_parenthesis():
    tick = loadtest.CLOCK_TICKS
    stat = loadtest.parse_proc_stat(stat_line(4242, 17, 3 * tick, tick, 2 * tick, tick, comm="Web Content (x) )"))
    assert (stat["pid"], stat["ppid"]) == (4242, 17)
    assert stat["utime"] == 3 and stat["stime"] == 1 and stat["cutime"] == 2 and stat["cstime"] == 1
    assert loadtest.cpu_seconds(stat) == 7 and loadtest.cpu_seconds(stat, children=False) == 4


def test_this_process_reads_from_proc():
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    stat = loadtest.read_stat(os.getpid())
    assert stat["pid"] == os.getpid() and stat["ppid"] == os.getppid() and loadtest.cpu_seconds(stat) > 0
    assert loadtest.read_stat(2**22 + 7) is None  # above the kernel's pid limit: no such process
    assert os.getpid() in loadtest.descendants(os.getppid(), loadtest.all_stats())


def test_tree_cpu_counts_descendants_and_leaves_out_excluded_subtrees():
    tick = loadtest.CLOCK_TICKS
    stats = {s["pid"]: s for s in map(loadtest.parse_proc_stat, [
        stat_line(1, 0, 100 * tick, 0),                 # not in the tree
        stat_line(10, 1, tick, 0),                      # the bench (root)
        stat_line(20, 10, 2 * tick, 0, 5 * tick, 0),    # Chromium, with 5 s of reaped renderers
        stat_line(21, 20, 3 * tick, tick),              # a live renderer
        stat_line(30, 10, 7 * tick, 0),                 # the server
        stat_line(31, 30, 11 * tick, 0),                # a child of the server
    ])}
    assert sorted(loadtest.descendants(10, stats)) == [10, 20, 21, 30, 31]
    assert loadtest.tree_cpu_seconds(30, stats=stats) == 18
    assert loadtest.tree_cpu_seconds(10, exclude=(30,), stats=stats) == 1 + 2 + 5 + 4
    assert loadtest.tree_cpu_seconds(10, exclude=(30,), stats=stats, include_root=False) == 11
    assert loadtest.tree_cpu_seconds(99, stats=stats) == 0  # a process that has gone


def test_summary_maths_and_table():
    summary = loadtest.summarise([4.0, None, 2.0, 9.0], server_cpu_s=1.5, browser_cpu_s=12.0, server_window_cpu_s=1.2,
                                 browser_window_cpu_s=8.0)
    assert summary["sessions"] == 4 and summary["answered"] == 3
    assert summary["median_s"] == 4.0 and summary["max_s"] == 9.0
    assert summary["server_cpu_s_per_photo"] == pytest.approx(0.5)
    nothing = loadtest.summarise([None, None], 3.0, 1.0)
    assert nothing["answered"] == 0 and nothing["median_s"] is None and nothing["server_cpu_s_per_photo"] is None
    table = loadtest.load_markdown({"machine": {"cores": 2, "cpu": "AMD EPYC"}, "runs": [
        {**summary, "flagged_not_dermoscopy": 1, "bundle": "b", "heatmap_method": "Grad-CAM", "measured": "2026-01-01",
         "browsers": "reduced motion"},
        nothing]})
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows[0].startswith("| 4 | 3 | 4.0 | 9.0 | 0.50 | 1.5 (1.2) | 12.0 (8.0) | reduced motion | 1 | - | `b` | Grad-CAM "
                           "| drawn photos |")
    assert rows[1].startswith("| 2 | 0 | - | - | - | 3.0 (-) | 1.0 (-) | animated | - |")
    assert table.startswith("## Many doctors at once")


def test_each_session_gets_its_own_photo():
    from skin_core.images import load_image

    first, second = load_image(loadtest.lesion_photo(1)), load_image(loadtest.lesion_photo(2))
    assert first.shape == (450, 600, 3) and not np.array_equal(first, second)


def test_the_app_keeps_keras_state_between_script_runs():
    """Streamlit would call keras.backend.clear_session() after each run: TensorFlow's kernel cache emptied
    (every prediction and heat-map re-instantiated, ~0.4 s of CPU each) and a full garbage collection."""
    from keras.src.backend.common import global_state
    from streamlit.testing.v1 import AppTest
    from test_app import APP, TIMEOUT

    global_state.set_global_attribute("load_test_probe", 1)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert global_state.get_global_attribute("load_test_probe") == 1, "Keras' session was cleared after the run"

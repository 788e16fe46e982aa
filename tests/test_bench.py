"""A tiny run of the benchmark command (the real one is `python -m skin_core bench`)."""

import json

from skin_core.bench import run
from skin_core.bundle import list_bundles
from skin_core.explain import METHODS


def test_bench_smoke(tmp_path):
    results = run(repeats=3, out_dir=tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [r["bundle"] for r in saved["bundles"]] == [b.name for b in list_bundles()]
    for r in results["bundles"]:
        assert r["served_path_ms"]["p50"] > 0 and r["cold_start_s"] > 0 and r["peak_rss_mb"] > 100
        assert r["served_over_bare_compiled"] > 0
        assert r["heatmap_method"] in METHODS and r["heatmap_ms"]["p50"] > 0  # the served default heat-map
    assert (tmp_path / "results.md").read_text().count("\n|") >= 2 + len(results["bundles"])

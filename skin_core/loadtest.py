"""Many doctors at once: where the app server's time goes, and how it holds up under N sessions.

* ``profile_session`` drives one whole session of ``pages/diagnose.py`` (page load, upload, Analyse)
  through Streamlit's AppTest, after a warm-up session, under cProfile with a CPU-time clock, and
  names the costs (prediction, not-a-dermoscopy check, heat-map, overlays, PNG encodes, chart, images).
* ``run_load`` (``python -m skin_core bench --load N``) starts ``streamlit run app.py`` headless on a
  free port, warms it with one browser session, then drives N concurrent Playwright sessions (one
  Chromium, N contexts), each uploading its own drawn dermoscopy-like photo and pressing Analyse, and
  records each session's upload -> result seconds, the server's CPU seconds and the browser's apart
  (``/proc/<pid>/stat`` of the server process and of the Chromium process tree).

Streamlit and Playwright are imported inside the functions that need them, so ``skin_core`` itself
never needs either.
"""

from __future__ import annotations

import io
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
APP_FILE = ROOT / "app.py"
BENCH_DIR = ROOT / "bench"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RESULT_TEXT = "Where the model looked"
TUCKED_AWAY_TEXT = "Show the model's output anyway"  # the expander holding the output for a non-dermoscopy photo

# Named costs of one session: label -> (file name ending, function name) entries of the profile.
COSTS = {
    "whole script run (page + result)": [("streamlit/runtime/scriptrunner/script_runner.py", "_run_script")],
    "  script compile (AppTest only: a server compiles once)": [
        ("streamlit/runtime/scriptrunner/script_cache.py", "get_bytecode")],
    "decode the upload (load_image)": [("skin_core/images.py", "load_image")],
    "model forward + check (Classifier.predict)": [("skin_core/classifier.py", "predict")],
    "  not-a-dermoscopy check": [("skin_core/ood.py", "reasons")],
    "heat-map (explainer call)": [("skin_core/explain.py", "__call__")],
    "overlays (colour + blend)": [("skin_core/explain.py", "overlay")],
    "PNG encodes (png_bytes)": [("skin_core/explain.py", "png_bytes")],
    "probability bars (st.progress)": [("pages/diagnose.py", "show_probabilities")],
    "st.image encodes": [("streamlit/elements/lib/image_utils.py", "image_to_url")],
    "upload hash (sha256)": [("~", "<built-in method _hashlib.openssl_sha256>")],
    "download buttons": [("streamlit/elements/widgets/button.py", "download_button")],
}


# ---------------------------------------------------------------------------------------------------
# Photos the bench can draw for itself (it may not import tests/).

def dermoscopy_like(seed: int = 0, size=(600, 450)):
    """A drawn close-up that passes for dermoscopy: pink-beige skin, dark vignette, brown blotchy lesion;
    each seed gives another photo (a PIL image; the tests draw theirs here too)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    skin = np.array([222, 168, 150]) + rng.normal(0, 6, 3)
    image = np.ones((h, w, 3)) * skin * np.clip(1.15 - 0.35 * radius, 0.4, 1)[..., None]
    canvas = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(14):  # irregular lesion from overlapping blotches of browns
        cx, cy = w / 2 + rng.normal(0, w / 14), h / 2 + rng.normal(0, h / 14)
        rx, ry = rng.uniform(w / 14, w / 6), rng.uniform(h / 14, h / 6)
        brown = tuple(int(c) for c in np.array([120, 72, 52]) + rng.normal(0, 15, 3))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=brown)
    canvas = canvas.filter(ImageFilter.GaussianBlur(6))
    noisy = np.asarray(canvas, np.float32) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def lesion_photo(seed: int = 0, size=(600, 450), quality: int = 90) -> bytes:
    """``dermoscopy_like`` as JPEG bytes, ready to upload."""
    buffer = io.BytesIO()
    dermoscopy_like(seed, size).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------
# CPU seconds from /proc (Linux).

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_proc_stat(text: str) -> dict:
    """The fields of a ``/proc/<pid>/stat`` line this module uses: pid, ppid, and utime, stime, cutime,
    cstime in seconds. The command name (field 2) may hold spaces and parentheses, so the line is split
    after its last ')'."""
    head, _, rest = text.strip().rpartition(")")
    fields = rest.split()  # fields[0] is field 3 (state)
    ticks = [int(v) for v in fields[11:15]]  # fields 14-17: utime stime cutime cstime
    return {"pid": int(head.split("(", 1)[0]), "ppid": int(fields[1]),
            **dict(zip(("utime", "stime", "cutime", "cstime"), (t / CLOCK_TICKS for t in ticks)))}


def cpu_seconds(stat: dict, children: bool = True) -> float:
    """User + system CPU of one process; with ``children``, also that of its children it has reaped."""
    own = stat["utime"] + stat["stime"]
    return own + (stat["cutime"] + stat["cstime"] if children else 0.0)


def read_stat(pid: int) -> dict | None:
    try:
        return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):  # the process has gone
        return None


def all_stats() -> dict[int, dict]:
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := read_stat(int(entry.name))) is not None:
            stats[stat["pid"]] = stat
    return stats


def descendants(root: int, stats: dict[int, dict]) -> list[int]:
    """``root`` and every live process below it, from a snapshot of ``(pid -> stat)``."""
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat["ppid"], []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int, exclude=(), stats: dict[int, dict] | None = None, include_root: bool = True) -> float:
    """CPU of a process tree: each live process's own plus its reaped children's (so a renderer that
    exited and was waited for still counts), leaving out the subtrees rooted at ``exclude`` (and the
    root itself, own CPU and reaped children, unless ``include_root``)."""
    stats = all_stats() if stats is None else stats
    skipped = {pid for e in exclude for pid in descendants(e, stats)} | (set() if include_root else {root})
    return sum(cpu_seconds(stats[pid]) for pid in descendants(root, stats) if pid not in skipped)


# ---------------------------------------------------------------------------------------------------
# One session under the profiler.

def _session(photo: bytes, timeout: float, app_file: Path) -> dict:
    """Page load, upload, Analyse through AppTest; CPU seconds of this process per step."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(app_file), default_timeout=timeout)
    steps = {"page load": lambda: at.run(),
             "upload": lambda: at.file_uploader[0].set_value(("lesion.jpg", photo, "image/jpeg")).run(),
             "analyse": lambda: at.form_submit_button[0].click().run()}
    seconds = {}
    for name, step in steps.items():
        started = time.process_time()
        step()
        seconds[name] = time.process_time() - started
        if at.exception:
            raise RuntimeError(f"the app raised during {name}: {at.exception[0].value}")
    if RESULT_TEXT not in [h.value for h in at.subheader]:
        raise RuntimeError("the session did not reach the result")
    return seconds


def named_costs(stats) -> dict[str, float]:
    """Cumulative CPU seconds of the functions in COSTS, from a ``pstats.Stats``."""
    out = {}
    for label, entries in COSTS.items():
        total = 0.0
        for (file, _, function), (_, _, _, cumulative, _) in stats.stats.items():
            if any(file.endswith(f) and function == fn for f, fn in entries):
                total += cumulative
        out[label] = total
    return out


def profile_session(photo: bytes | None = None, top: int = 30, timeout: float = 300,
                    app_file: Path = APP_FILE) -> dict:
    """One analysed session of the app, after a warm-up session, under cProfile (CPU-time clock).

    The profiler runs in Streamlit's script thread; its clock is the process's CPU time, so work in
    TensorFlow's own threads is charged to the Python call waiting for it. Returns the CPU seconds per
    step, the named costs (COSTS) and the ``top`` functions by cumulative time as text.
    """
    import cProfile
    import pstats

    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    _session(lesion_photo(1000), timeout, app_file)  # warm-up: model load, graph tracing, imports
    profiler = cProfile.Profile(time.process_time)
    original = LocalScriptRunner._run_script_thread

    def profiled(runner):
        profiler.enable()
        try:
            original(runner)
        finally:
            profiler.disable()

    LocalScriptRunner._run_script_thread = profiled
    try:
        steps = _session(photo or lesion_photo(7), timeout, app_file)
    finally:
        LocalScriptRunner._run_script_thread = original
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    return {"cpu_s": sum(steps.values()), "steps_cpu_s": steps, "costs_cpu_s": named_costs(stats),
            "top": text.getvalue()}


def profile_markdown(profile: dict) -> str:
    steps = ", ".join(f"{k} {v:.2f} s" for k, v in profile["steps_cpu_s"].items())
    compile_s = next(v for k, v in profile["costs_cpu_s"].items() if "script compile" in k)
    lines = [f"One analysed session, CPU seconds of the app process: {profile['cpu_s']:.2f} ({steps}); "
             f"{profile['cpu_s'] - compile_s:.2f} without AppTest's script compiles.", "",
             "| cost | CPU s (cumulative) |", "|---|---|"]
    lines += [f"| {label} | {seconds:.3f} |" for label, seconds in profile["costs_cpu_s"].items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# N concurrent browser sessions against a real server.

def summarise(seconds: list[float | None], server_cpu_s: float, browser_cpu_s: float,
              server_window_cpu_s: float | None = None, browser_window_cpu_s: float | None = None,
              driver_cpu_s: float | None = None) -> dict:
    """One load run's figures. ``seconds``: each session's upload -> result time (None: no result);
    ``server_cpu_s`` / ``browser_cpu_s``: CPU over the whole sessions (page load to result);
    ``server_window_cpu_s`` / ``browser_window_cpu_s``: from the moment all uploads start to the last result."""
    answered = [s for s in seconds if s is not None]
    return {
        "sessions": len(seconds), "answered": len(answered),
        "median_s": statistics.median(answered) if answered else None,
        "max_s": max(answered) if answered else None,
        "server_cpu_s": server_cpu_s,
        "server_cpu_s_per_photo": server_cpu_s / len(answered) if answered else None,
        "server_upload_to_result_cpu_s": server_window_cpu_s,
        "browser_cpu_s": browser_cpu_s,
        "browser_upload_to_result_cpu_s": browser_window_cpu_s,
        "driver_cpu_s": driver_cpu_s,
        "seconds": seconds,
    }


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def load_markdown(load: dict) -> str:
    m = load.get("machine", {})
    lines = ["## Many doctors at once", "",
             f"`python -m skin_core bench --load N`: `streamlit run app.py` on {m.get('cores', '?')} cores "
             f"({m.get('cpu', '?')}); one Chromium, one context per session; every session opens the page, then all "
             "upload their own photo (column 'photos': drawn 600 x 450, or real ones from `--photos FOLDER`) at the same moment and press Analyse. Upload -> result runs until "
             "the heat-map's caption shows. Server and browser CPU are read apart from /proc (server: the streamlit "
             "process; browser: Chromium and Playwright's driver), over the whole sessions (page load to result); "
             "figures in brackets count only from the uploads on. The server was warmed by one session first. The "
             "drawn photos may be called 'not a dermoscopy photo' (column 'flagged'): the server computes the same "
             "output, which the page tucks into an expander that the session opens (a click in the browser alone). "
             "Column 'browsers': 'animated' is the plain run; 'reduced motion' (`--reduced-motion`) has every page ask "
             "for reduced motion, so that ten software-rendered pages do not spend the shared cores drawing "
             "Streamlit's spinner and running-man animations, work that in a clinic falls on the doctors' own "
             "computers, not on the server.",
             "",
             "| sessions | answered | median upload -> result (s) | max (s) | server CPU s per photo "
             "| server CPU s (upload -> result) | browser CPU s (upload -> result) | browsers | flagged | load avg. before "
             "| bundle | heat-map | photos | measured |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in load["runs"]:
        lines.append(
            f"| {r['sessions']} | {r['answered']} | {_number(r['median_s'], '.1f')} | {_number(r['max_s'], '.1f')} "
            f"| {_number(r['server_cpu_s_per_photo'], '.2f')} | {r['server_cpu_s']:.1f} "
            f"({_number(r.get('server_upload_to_result_cpu_s'), '.1f')}) | {r['browser_cpu_s']:.1f} "
            f"({_number(r.get('browser_upload_to_result_cpu_s'), '.1f')}) | {r.get('browsers', 'animated')} "
            f"| {r.get('flagged_not_dermoscopy', '-')} "
            f"| {_number(r.get('load_average_before'), '.1f')} | `{r.get('bundle', '?')}` | {r.get('heatmap_method', '?')} "
            f"| {r.get('photos', 'drawn photos')} | {r.get('measured', '')} |")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log_path: Path, timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` headless on a free loopback port; returns once it answers its health check."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(APP_FILE), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited ({process.returncode}):\n{_tail(log_path)}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"streamlit did not answer within {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def heatmap_caption() -> re.Pattern:
    from .explain import METHODS

    return re.compile("^(" + "|".join(re.escape(m) for m in METHODS) + ") for ")


async def _one_session(browser, url: str, photo: Path, timeout_s: float, ready: list, start,
                       outcome: dict | None = None, reduced_motion: bool = False) -> float:
    """Open the page, say so in ``ready``, wait for ``start``, upload, press Analyse, wait for the result;
    returns the upload -> result seconds, until the heat-map's caption shows (for a photo called 'not a
    dermoscopy photo' the output comes tucked in an expander, which is opened: a click in the browser alone).
    ``outcome`` gains ``seconds`` and ``flagged`` (the photo was called not a dermoscopy photo)."""
    outcome = {} if outcome is None else outcome
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1200, "height": 1400},
                                        reduced_motion="reduce" if reduced_motion else "no-preference")
    context.set_default_timeout(timeout_s * 1000)
    try:
        page = await context.new_page()
        await page.goto(url)
        await expect(page.get_by_role("button", name="Analyse")).to_be_visible(timeout=timeout_s * 1000)
        ready.append(photo)
        await start.wait()
        started = time.perf_counter()
        await page.set_input_files("input[type=file]", str(photo))
        await page.get_by_role("button", name="Analyse").click()  # waits until the upload has enabled it
        caption, tucked = page.get_by_text(heatmap_caption()), page.get_by_text(TUCKED_AWAY_TEXT)
        await expect(caption.or_(tucked).first).to_be_visible(timeout=timeout_s * 1000)
        flagged = not await caption.is_visible()
        if flagged:  # called "not a dermoscopy photo": the output is tucked in an expander (opened in the browser alone)
            await tucked.click()
        await expect(caption).to_be_visible(timeout=timeout_s * 1000)
        seconds = time.perf_counter() - started
        await expect(page.get_by_text(RESULT_TEXT)).to_be_visible(timeout=timeout_s * 1000)
        if await page.locator("[data-testid=stException]").count():
            raise RuntimeError("the app showed an exception")
        outcome.update(seconds=seconds, flagged=flagged)
        return seconds
    finally:
        await context.close()


class _CpuClock:
    """CPU seconds so far of the server's process tree, of this process's other children (Chromium and
    Playwright's driver) and of this process itself, from one /proc snapshot."""

    def __init__(self, server_pid: int):
        self.server_pid, self.me = server_pid, os.getpid()

    def read(self) -> dict:
        stats = all_stats()
        return {"server": tree_cpu_seconds(self.server_pid, stats=stats),
                "browser": tree_cpu_seconds(self.me, exclude=(self.server_pid,), stats=stats, include_root=False),
                "driver": cpu_seconds(stats[self.me], children=False)}


async def _drive(url: str, photos: list[Path], timeout_s: float, server_pid: int, executable: str | None,
                 reduced_motion: bool = False) -> dict:
    import asyncio

    from playwright.async_api import async_playwright

    clock = _CpuClock(server_pid)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            go = asyncio.Event()
            go.set()
            await _one_session(browser, url, photos[0], timeout_s, [], go, reduced_motion=reduced_motion)  # warm-up: imports, caches, tracing
            ready, start = [], asyncio.Event()
            begin = clock.read()
            details = [{} for _ in photos[1:]]
            tasks = [asyncio.ensure_future(_one_session(browser, url, photo, timeout_s, ready, start, detail,
                                                        reduced_motion))
                     for photo, detail in zip(photos[1:], details)]
            deadline = time.perf_counter() + timeout_s
            while len(ready) < len(tasks) and not any(t.done() for t in tasks) and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)  # every page loaded before the uploads start together
            window = clock.read()
            start.set()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            end = clock.read()
        finally:
            await browser.close()
    errors = [f"{type(o).__name__}: {(str(o).splitlines() or [''])[0]}" for o in outcomes if isinstance(o, BaseException)]
    seconds = [None if isinstance(o, BaseException) else o for o in outcomes]
    return {**summarise(seconds, end["server"] - begin["server"], end["browser"] - begin["browser"],
                        end["server"] - window["server"], end["browser"] - window["browser"],
                        end["driver"] - begin["driver"]),
            "flagged_not_dermoscopy": sum(bool(d.get("flagged")) for d in details), "errors": errors}


def run_load(sessions: int = 10, out_dir=BENCH_DIR, timeout_s: float = 600, chromium: str | None = None,
             write: bool = True, photo_folder=None, reduced_motion: bool = False) -> dict:
    """Start the app, warm it with one browser session, then ``sessions`` at once; write the result into
    ``out_dir``/results.json (key ``load``, one run per session count) and ``out_dir``/load.md.

    ``photo_folder``: real dermoscopy photos to upload (the first ``sessions`` + 1 JPEGs by name, e.g. a
    HAM10000 images folder); without it, drawn photos, which the not-a-dermoscopy check may flag.
    ``reduced_motion``: the pages ask for reduced motion (prefers-reduced-motion), so that ten software-rendered
    pages do not spend the shared cores on Streamlit's spinner and running-man animations, which in a clinic run
    on the doctors' own computers (runs are kept apart by this)."""
    import asyncio
    import json
    import shutil
    import tempfile
    from datetime import date

    from .bench import machine
    from .bundle import write_json
    from .classifier import default_bundle

    executable = chromium or shutil.which("chromium") or None
    load_before = os.getloadavg()[0]  # other work on the machine (e.g. a training run) slows every figure
    bundle = default_bundle()
    with tempfile.TemporaryDirectory(prefix="skin-load-") as tmp:
        tmp = Path(tmp)
        sources = sorted(Path(photo_folder).glob("*.jpg"))[:sessions + 1] if photo_folder else []
        if photo_folder and len(sources) < sessions + 1:
            raise ValueError(f"{photo_folder} holds fewer than {sessions + 1} JPEG photos")
        photos = []
        for i in range(sessions + 1):  # photo 0 warms the server
            photos.append(tmp / f"lesion{i}.jpg")
            photos[-1].write_bytes(sources[i].read_bytes() if sources else lesion_photo(i))
        server, url = start_server(tmp / "streamlit.log")
        try:
            result = asyncio.run(_drive(url, photos, timeout_s, server.pid, executable, reduced_motion))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    result.update(browsers="reduced motion" if reduced_motion else "animated",
                  photos="real photos" if photo_folder else "drawn photos", bundle=bundle.name, heatmap_method=bundle.card.get("heatmap", {}).get("default", "Grad-CAM"),
                  measured=date.today().isoformat(), load_average_before=load_before)
    if write:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        load = results.get("load", {})
        same = (sessions, result["browsers"])
        runs = [r for r in load.get("runs", []) if (r["sessions"], r.get("browsers", "animated")) != same]
        load = {**load, "machine": machine(),
                "runs": sorted(runs + [result], key=lambda r: (r["sessions"], r.get("browsers", "animated")))}
        results["load"] = load
        write_json(path, results)
        (out_dir / "load.md").write_text(load_markdown(load))
    return result

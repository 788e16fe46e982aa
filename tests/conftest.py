import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import settings

# Property tests explore the same examples on every run, so CI cannot turn red by chance.
settings.register_profile("repeatable", derandomize=True)
settings.load_profile("repeatable")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

SHARED = ROOT.parent / "shared"
HAM10000 = SHARED / "data" / "ham10000"
MOBILENET_V2_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_notop.weights.h5"


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small HAM10000-shaped folder and its own lesion split file."""
    from synthetic import make_dataset

    from skin_core import data

    root = make_dataset(tmp_path_factory.mktemp("ham"), per_class=10)
    split = data.make_split(data.read_ham10000(root), fractions=(0.5, 0.25, 0.25))
    split.to_csv(root / "split.csv", index=False)
    return root


def single_network(classifier):
    """The one network behind a served classifier, for tests that read a network's internals: an ensemble's
    first member, which also runs the ensemble's not-a-dermoscopy check."""
    return classifier.members[0] if hasattr(classifier, "members") else classifier


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not start")
    yield SimpleNamespace(url=url, pid=process.pid)
    process.terminate()
    process.wait(timeout=30)



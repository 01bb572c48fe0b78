import os

import pytest
import torch

# Tests never reach a model hub.
os.environ.setdefault("DIFFSYNTH_SKIP_DOWNLOAD", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# pytest-xdist runs two workers on two cores: one thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module runs: tiny models run fastest so, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def demo_dir():
    """The published demo scenes the repository keeps in demo_assets/."""
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "demo_assets"

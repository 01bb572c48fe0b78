from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="diffsynth-dualcam",
    version="0.1.0",
    description="DualCamCtrl (camera-controlled RGB + depth video generation) as a DiffSynth-Studio 2.x plugin",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["diffsynth_dualcam", "diffsynth_dualcam.*"]),
    python_requires=">=3.10",
    install_requires=read_requirements(),
    extras_require={
        "test": ["pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "ruff", "evo", "playwright", "torchmetrics"],
        "metrics": ["torchmetrics[image]"],
        "usp": ["xfuser"],
    },
    entry_points={"console_scripts": ["dualcam=diffsynth_dualcam.cli:main"]},
)

"""The web app in a real browser: Chromium driven by Playwright against the app served on localhost (tiny model).

Writes a screenshot of the finished page to outputs/test-artifacts/app.png, and of the camera panel's 3D view after
choosing a preset and after generating to scene_preset.png and scene_generated.png beside it.
"""
import json
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[1] / "outputs" / "test-artifacts" / "app.png"
#: Clear colour of the 3D views, (0.1, 0.1, 0.1) in 8 bits.
VIEW_BACKGROUND = np.array([26, 26, 26])

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium)"
)


def _binary_colmap_zip(folder: Path) -> Path:
    """A .zip of a five-camera binary COLMAP model under sparse/0/."""
    pycolmap = pytest.importorskip("pycolmap")
    from diffsynth_dualcam.camera import CameraTrajectory

    preset = CameraTrajectory.preset("pan_right", num_frames=5)
    CameraTrajectory(preset.c2w, preset.intrinsics, (96, 64)).save(folder / "text", format="colmap")
    (folder / "binary").mkdir()
    pycolmap.Reconstruction(str(folder / "text")).write_binary(str(folder / "binary"))
    archive = folder / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((folder / "binary").iterdir()):
            zipped.write(path, f"sparse/0/{path.name}")
    return archive


def drawn_pixels(canvas, path: Path) -> int:
    """Screenshot a WebGL canvas to ``path``; the number of its pixels that differ from the clear colour."""
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.screenshot(path=str(path))
    with Image.open(path) as shot:
        pixels = np.asarray(shot.convert("RGB")).astype(int)
    return int((np.abs(pixels - VIEW_BACKGROUND).max(axis=-1) > 40).sum())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """The app on the tiny pipeline and a tiny depth model, served from this process."""
    from diffsynth_dualcam.app.generation import PipelineGenerator
    from diffsynth_dualcam.app.ui import AppSettings, build_app, launch
    from diffsynth_dualcam.pipeline.tiny import save_tiny_depth_anything, tiny_pipeline

    root = tmp_path_factory.mktemp("app")
    save_tiny_depth_anything(root / "depth_model")
    generator = PipelineGenerator(tiny_pipeline(), root / "runs", depth_model=str(root / "depth_model"), tiled=False)
    settings = AppSettings(height=32, width=48, num_frames=5, num_inference_steps=2,
                           banner="Tiny random model: the videos are noise.")
    page = build_app(generator, settings)
    port = _free_port()
    launch(page, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    page.close()


def test_generate_in_the_browser(app_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    bad_upload = tmp_path / "holiday.png"
    bad_upload.write_text("this is text, not a picture")
    photo = tmp_path / "room.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(photo)
    transforms = tmp_path / "transforms.json"
    frames = [{"file_path": "/etc/hostname", "transform_matrix": np.eye(4).tolist()}]
    transforms.write_text(json.dumps({"camera_angle_x": 1.0, "frames": frames}))
    colmap_zip = _binary_colmap_zip(tmp_path)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(app_url)
            expect = sync_api.expect
            expect(page.locator("#banner")).to_contain_text("Tiny random model")
            expect(page.locator("#trajectory-plot img")).to_be_visible(timeout=60_000)
            expect(page.locator("#preset-camera").first).to_be_visible()

            # Choosing a preset updates the 3D view of the cameras beside the plot, and its scale line.
            page.get_by_role("combobox", name="Preset").click()
            page.get_by_role("option", name="dolly_in").click()
            expect(page.locator("#scene-status")).to_contain_text("moves 0.04 trajectory units over 5 frames",
                                                                  timeout=30_000)
            scene_canvas = page.locator("#camera-scene canvas")
            expect(scene_canvas).to_be_visible(timeout=30_000)
            page.wait_for_timeout(2_000)  # let the view draw
            assert drawn_pixels(scene_canvas, SCREENSHOT.with_name("scene_preset.png")) > 200

            upload = page.locator("#image-upload input[type=file]")
            upload.set_input_files(str(bad_upload))
            refusal = page.get_by_text("first frame: not a readable image")
            expect(refusal).to_be_visible(timeout=30_000)
            page.locator(".toast-close").first.click()
            expect(refusal).to_be_hidden()
            page.locator("#image-upload button[aria-label='Clear']").click()
            upload.set_input_files(str(photo))
            page.locator("#prompt textarea").fill("a bright room")

            page.locator("#generate").click()
            for video in ("#video-rgb", "#video-depth", "#video-side-by-side"):
                expect(page.locator(f"{video} video")).to_be_visible(timeout=120_000)
            for name in ("video.mp4", "depth.mp4", "points.ply", "scene.zip"):
                expect(page.locator(f"#downloads a[download='{name}']")).to_have_count(1)
            expect(page.locator("#status")).to_contain_text("estimated automatically")
            expect(page.locator("#point-cloud canvas")).to_be_visible()
            expect(page.locator("#downloads a[download='scene.glb']")).to_have_count(1)
            page.wait_for_timeout(2_000)  # let the 3D views draw their first frames for the screenshots
            assert drawn_pixels(scene_canvas, SCREENSHOT.with_name("scene_generated.png")) > 200
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # A trajectory file: a transforms.json without its image size is refused on the page, a zipped
            # binary COLMAP model is read and plotted.
            page.locator("#camera-source").get_by_text("Trajectory file").click()
            trajectory_upload = page.locator("#trajectory-upload input[type=file]")
            trajectory_upload.set_input_files(str(transforms))
            expect(page.locator("#camera-status")).to_contain_text("must give the image width and height",
                                                                   timeout=30_000)
            page.locator("#trajectory-upload button[aria-label='Clear']").click()
            trajectory_upload.set_input_files(str(colmap_zip))
            expect(page.locator("#camera-status")).to_contain_text("5 frames", timeout=30_000)

            # The camera source chooses which editor is shown.
            page.locator("#camera-source").get_by_text("Keyframes").click()
            expect(page.locator("#keyframes")).to_be_visible()
            expect(page.locator("#preset-camera").first).to_be_hidden()
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000

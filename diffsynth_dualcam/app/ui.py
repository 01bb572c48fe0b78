"""The Gradio page: inputs, camera choice with a live preview, generation with progress, videos and 3D view.

:func:`build_app` takes the generate function, so the page runs on the real pipeline, the tiny one or a stand-in.
Handlers are plain functions of the widget values, raising :class:`gradio.Error` with a message for the user.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
from PIL import Image

from ..camera import CameraTrajectory
from ..camera.trajectory import fov_intrinsics
from ..pipeline.inputs import fit_trajectory_length
from .generation import Generate, GenerationRequest, GenerationResult
from .keyframes import KEYFRAME_COLUMNS, keyframes_to_trajectory
from .scene import PreviewFolder, scene_preview
from .uploads import (
    IMAGE_FORMATS,
    MAX_IMAGE_BYTES,
    UPLOAD_SUFFIXES,
    UploadError,
    load_image_upload,
    load_trajectory_upload,
)

CAMERA_SOURCES = ("Preset", "Trajectory file", "Keyframes")
MAX_UPLOAD_SIZE = f"{MAX_IMAGE_BYTES // 2**20}mb"
PAGE_CSS = "#banner { background: #fff3cd; border: 1px solid #e0b100; border-radius: 6px; padding: 4px 12px; }"


@dataclass(frozen=True)
class AppSettings:
    """Starting values of the page's controls and the banner shown above it (None: no banner)."""

    height: int = 320
    width: int = 480
    num_frames: int = 61
    num_inference_steps: int = 50
    cfg_scale: float = 6.0
    seed: int = 42
    preset: str = "orbit_left"
    field_of_view: float = 90.0
    max_side: int = 1280
    banner: str | None = None


def keyframe_intrinsics(field_of_view: float, *, width: int, height: int) -> list[float]:
    """Normalised (fx, fy, cx, cy) of a centred pinhole camera with horizontal `field_of_view` degrees."""
    return fov_intrinsics(field_of_view, width, height).tolist()


def build_camera(
    source: str,
    preset: str,
    speed: float,
    trajectory_files: list[str] | None,
    keyframe_rows: list[list[object]] | None,
    field_of_view: float,
    num_frames: int,
    width: int,
    height: int,
    resample_camera: bool = False,
) -> CameraTrajectory:
    """The trajectory chosen on the page, `num_frames` long (raises UploadError/ValueError with a message for the
    user). An uploaded path is followed frame by frame, or stretched over the clip with `resample_camera`."""
    if source == "Preset":
        return CameraTrajectory.preset(preset, num_frames=int(num_frames), speed=float(speed))
    if source == "Trajectory file":
        if not trajectory_files:
            raise UploadError("trajectory file: upload a trajectory first (or choose a preset)")
        return fit_trajectory_length(load_trajectory_upload(trajectory_files), int(num_frames), bool(resample_camera))
    if source == "Keyframes":
        intrinsics = keyframe_intrinsics(float(field_of_view), width=int(width), height=int(height))
        trajectory = keyframes_to_trajectory(keyframe_rows or [], int(num_frames), intrinsics)
        return CameraTrajectory(trajectory.c2w, trajectory.intrinsics, (int(width), int(height)))
    raise ValueError(f"camera source must be one of {CAMERA_SOURCES}, got {source!r}")


def preview_camera(*camera_inputs) -> tuple[Image.Image | None, str]:
    """Plot of the trajectory chosen on the page (arguments of :func:`build_camera`), or no plot and the reason."""
    try:
        trajectory = build_camera(*camera_inputs)
        with tempfile.TemporaryDirectory(prefix="dualcam-preview-") as folder:
            path = trajectory.plot(Path(folder) / "trajectory.png", title=f"{len(trajectory)} frames")
            with Image.open(path) as plot:
                plot.load()
                return plot.copy(), f"**Camera:** {len(trajectory)} frames"
    except (ValueError, TypeError, OverflowError) as error:  # the plot too: axes beyond what it can draw
        return None, f"**Camera:** {str(error) or f'cannot plot this path ({type(error).__name__})'}"


def preview_scene(folder: PreviewFolder, image_path: str | None, depth_path: str | None,
                  *camera_inputs) -> tuple[str | None, str]:
    """3D scene of the trajectory chosen on the page (arguments of :func:`build_camera` after the uploads) in the
    uploads' first frame, and its scale line; no scene when the camera is unusable (the plot's status says why)."""
    try:
        trajectory = build_camera(*camera_inputs)
    except (ValueError, TypeError):
        return None, ""
    num_frames, width, height = camera_inputs[6:9]
    return scene_preview(folder, trajectory, image_path, depth_path, num_frames, width=width, height=height)


class PageHandlers:
    """The page's upload check and generate handler around one generate function."""

    def __init__(self, generate: Generate) -> None:
        self.generate = generate

    def check_image(self, path: str | None, what: str) -> str | None:
        """The upload's path for the preview if it is an acceptable image; a message for the user otherwise."""
        if path is None:
            return None
        try:
            load_image_upload(path, what)
        except UploadError as error:
            raise gr.Error(str(error)) from None
        return path

    def run(
        self,
        image_path: str | None,
        depth_path: str | None,
        prompt: str | None,
        negative_prompt: str | None,
        source: str,
        preset: str,
        speed: float,
        trajectory_files: list[str] | None,
        keyframe_rows: list[list[object]] | None,
        field_of_view: float,
        width: float,
        height: float,
        num_frames: float,
        steps: float,
        cfg_scale: float,
        seed: float | None,
        progress: gr.Progress | None = None,
        resample_camera: bool = False,
    ) -> tuple:
        """Validate everything, generate, and return the page's outputs."""
        try:
            if image_path is None:
                raise UploadError("first frame: upload an image")
            image = load_image_upload(image_path, "first frame")
            depth = load_image_upload(depth_path, "depth map") if depth_path is not None else None
            width, height, num_frames = int(width), int(height), int(num_frames)
            camera = build_camera(source, preset, speed, trajectory_files, keyframe_rows, field_of_view, num_frames,
                                  width, height, resample_camera)
            request = GenerationRequest(
                image=image, depth=depth, prompt=str(prompt or ""), negative_prompt=str(negative_prompt or ""),
                camera=camera, height=height, width=width, num_frames=num_frames, num_inference_steps=int(steps),
                cfg_scale=float(cfg_scale), seed=None if seed is None or int(seed) < 0 else int(seed),
                resample_camera=bool(resample_camera),
            )
        except (ValueError, TypeError) as error:
            raise gr.Error(str(error)) from None
        if progress is None:
            progress_bar = lambda iterable: iterable  # noqa: E731
        else:
            progress_bar = lambda iterable: progress.tqdm(iterable, desc="Denoising")  # noqa: E731
        try:
            result = self.generate(request, progress_bar)
        except ValueError as error:  # the pipeline's argument checks, the depth model's loading
            raise gr.Error(str(error)) from None
        return outputs_of(result)


def outputs_of(result: GenerationResult) -> tuple:
    """Page outputs of a finished generation: three videos, the point cloud, downloads, a status line, the
    depth map the generation was conditioned on and the generated scene with its cameras."""
    lines = [f"Done: `{result.run_dir.name}`"] + result.notes
    return (str(result.video), str(result.depth_video), str(result.side_by_side),
            str(result.point_cloud) if result.point_cloud is not None else None,
            [str(path) for path in result.downloads], "\n\n".join(lines), str(result.input_depth),
            str(result.scene) if result.scene is not None else None)


def build_app(generate: Generate, settings: AppSettings | None = None) -> gr.Blocks:
    """The page, wired to `generate`; queue it with ``concurrency_limit=1`` (see :func:`launch`)."""
    settings = settings or AppSettings()
    handlers = PageHandlers(generate)
    presets = CameraTrajectory.preset_names()
    last_frame = settings.num_frames - 1
    default_keyframes = [[0, 0, 0, 0, 0, 0, 0], [last_frame, 15, 0, 0, 0.3, 0, 0.5]]
    image_types = [f".{name.lower()}" for name in IMAGE_FORMATS] + [".jpg"]

    # Gradio's cache of uploads and results: files older than a day are removed every hour.
    with gr.Blocks(title="DualCamCtrl", delete_cache=(3600, 86400), analytics_enabled=False) as page:
        gr.Markdown("# DualCamCtrl\nCamera-controlled image-to-video with a co-generated depth video.")
        if settings.banner:
            gr.Markdown(f"⚠️ {settings.banner}", elem_id="banner")
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    image_file = gr.File(label="First frame", file_types=image_types, elem_id="image-upload")
                    depth_file = gr.File(label="Depth map (optional: estimated when absent)",
                                         file_types=image_types, elem_id="depth-upload")
                with gr.Row():
                    image_preview = gr.Image(label="First frame", interactive=False, height=160)
                    depth_preview = gr.Image(label="Depth map", interactive=False, height=160)
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt")
                negative_prompt = gr.Textbox(label="Negative prompt", lines=1)
                source = gr.Radio(list(CAMERA_SOURCES), value="Preset", label="Camera", elem_id="camera-source")
                with gr.Group(visible=True, elem_id="preset-camera") as preset_group:
                    with gr.Row():
                        preset = gr.Dropdown(presets, value=settings.preset if settings.preset in presets
                                             else presets[0], label="Preset")
                        speed = gr.Slider(0.1, 3.0, value=1.0, step=0.1, label="Speed")
                with gr.Group(visible=False, elem_id="file-camera") as file_group:
                    trajectory_files = gr.File(
                        label="Trajectory file (.json, RealEstate10K .txt, .torch, transforms.json with w and h, "
                              "or a COLMAP model: cameras + images .txt or .bin, or a .zip of them)",
                        file_count="multiple", file_types=list(UPLOAD_SUFFIXES), elem_id="trajectory-upload",
                    )
                    resample_camera = gr.Checkbox(
                        value=False, label="Resample camera: stretch the whole path over the clip (default: follow "
                                           "it frame by frame, its first cameras)", elem_id="resample-camera")
                with gr.Group(visible=False, elem_id="keyframe-camera") as keyframe_group:
                    keyframes = gr.Dataframe(
                        value=default_keyframes, headers=KEYFRAME_COLUMNS, datatype="number", type="array",
                        label=("Keyframes: yaw right / pitch up / roll in degrees; x right, y down, z forward "
                               "of a camera at angles 0"),
                        column_count=len(KEYFRAME_COLUMNS), interactive=True, elem_id="keyframes",
                    )
                    field_of_view = gr.Slider(20, 150, value=settings.field_of_view, step=1,
                                              label="Horizontal field of view (degrees)")
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        height = gr.Slider(32, settings.max_side, value=settings.height, step=16, label="Height")
                        width = gr.Slider(32, settings.max_side, value=settings.width, step=16, label="Width")
                    with gr.Row():
                        num_frames = gr.Slider(5, 361, value=settings.num_frames, step=4,
                                               label="Frames (4k+1; beyond 61: chained clips)")
                        steps = gr.Slider(1, 100, value=settings.num_inference_steps, step=1, label="Steps")
                    with gr.Row():
                        cfg_scale = gr.Slider(1.0, 12.0, value=settings.cfg_scale, step=0.5, label="Guidance")
                        seed = gr.Number(value=settings.seed, precision=0, label="Seed (-1: random)")
                generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=1):
                with gr.Row():
                    camera_plot = gr.Image(label="Trajectory", interactive=False, elem_id="trajectory-plot")
                    # The cameras in the first frame's scene, viewer axes (y up), seen from behind the first camera.
                    camera_scene = gr.Model3D(label="Cameras in the scene", elem_id="camera-scene",
                                              clear_color=(0.1, 0.1, 0.1, 1.0), camera_position=(90, 90, None),
                                              height=360)
                camera_status = gr.Markdown(elem_id="camera-status")
                scene_status = gr.Markdown(elem_id="scene-status")
                status = gr.Markdown(elem_id="status")
                with gr.Row():
                    video = gr.Video(label="RGB", elem_id="video-rgb", loop=True, autoplay=True)
                    depth_video = gr.Video(label="Depth", elem_id="video-depth", loop=True, autoplay=True)
                side_by_side = gr.Video(label="Side by side", elem_id="video-side-by-side", loop=True)
                # Seen from behind the first camera: the viewer's +z axis points back toward it.
                point_cloud = gr.Model3D(label="Point cloud", display_mode="point_cloud", elem_id="point-cloud",
                                         clear_color=(0.1, 0.1, 0.1, 1.0), camera_position=(90, 90, None),
                                         height=360)
                downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")

        source_groups = [preset_group, file_group, keyframe_group]
        source.change(lambda chosen: [gr.update(visible=chosen == name) for name in CAMERA_SOURCES], source,
                      source_groups, queue=False)
        camera_inputs = [source, preset, speed, trajectory_files, keyframes, field_of_view, num_frames, width, height,
                         resample_camera]
        for control in camera_inputs:
            control.change(preview_camera, camera_inputs, [camera_plot, camera_status], queue=False,
                           show_progress="hidden")
        page.load(preview_camera, camera_inputs, [camera_plot, camera_status], queue=False)
        scene_inputs, previews = [image_file, depth_file, *camera_inputs], PreviewFolder()
        for control in scene_inputs:
            control.change(partial(preview_scene, previews), scene_inputs, [camera_scene, scene_status], queue=False,
                           show_progress="hidden")
        page.load(partial(preview_scene, previews), scene_inputs, [camera_scene, scene_status], queue=False)
        # Queued (so that a refusal shows its message) but never waiting behind a generation.
        image_file.change(lambda path: handlers.check_image(path, "first frame"), image_file, image_preview,
                          concurrency_limit=None, show_progress="hidden")
        depth_file.change(lambda path: handlers.check_image(path, "depth map"), depth_file, depth_preview,
                          concurrency_limit=None, show_progress="hidden")

        def on_generate(image_path, depth_path, prompt, negative_prompt, source, preset, speed, trajectory_files,
                        keyframe_rows, field_of_view, width, height, num_frames, steps, cfg_scale, seed,
                        resample_camera, progress=gr.Progress()):  # noqa: B008 - gradio injects progress
            return handlers.run(image_path, depth_path, prompt, negative_prompt, source, preset, speed,
                                trajectory_files, keyframe_rows, field_of_view, width, height, num_frames, steps,
                                cfg_scale, seed, progress, resample_camera=resample_camera)

        generate_button.click(
            on_generate,
            [image_file, depth_file, prompt, negative_prompt, *camera_inputs[:6], width, height, num_frames, steps,
             cfg_scale, seed, resample_camera],
            [video, depth_video, side_by_side, point_cloud, downloads, status, depth_preview, camera_scene],
            concurrency_limit=1, concurrency_id="gpu",
        )
    return page


def launch(page: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs) -> None:
    """Serve `page` with one generation at a time and the upload size limit."""
    page.queue(default_concurrency_limit=1, max_size=32)
    page.launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD_SIZE, css=PAGE_CSS, **kwargs)

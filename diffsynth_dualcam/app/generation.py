"""What the web app asks for and gets back, and the generator that runs the pipeline for it.

The app only needs a callable ``generate(request, progress_bar_cmd) -> GenerationResult``; :class:`PipelineGenerator`
is the one that runs ``DualCamCtrlPipeline``, writes the run folder and exports the point cloud.
"""
from __future__ import annotations

import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from ..camera import CameraTrajectory
from ..export.export3d import INPUT_DEPTH_FILE, VIEWER_AXES, PointCloud, export_run, read_ply, write_ply
from ..export.preview import write_scene
from ..models.depth_estimator import DEFAULT_DEPTH_MODEL, DepthEstimator
from ..pipeline.setup import CLIP_FRAMES

if TYPE_CHECKING:
    from ..pipeline import DualCamCtrlPipeline

ProgressBar = Callable[[Iterable], Iterable]
#: The generated point cloud with the cameras (a .glb for the page's 3D view and the downloads).
SCENE_FILE = "scene.glb"


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation needs; `depth` None asks for automatic depth; `resample_camera` stretches the
    camera path over the clip instead of following it frame by frame."""

    image: Image.Image
    depth: Image.Image | None
    prompt: str
    negative_prompt: str
    camera: CameraTrajectory
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    cfg_scale: float
    seed: int | None
    resample_camera: bool = False


@dataclass(frozen=True)
class GenerationResult:
    """Files of one finished generation.

    `point_cloud` is the lifted cloud in y-up viewer axes (`points.ply` among the downloads keeps the cameras' OpenCV
    axes), None when the 3D export was not possible (see `notes`).
    `input_depth` is the first frame's depth map as conditioned on (uploaded or estimated, at the output size).
    `scene` is the generated point cloud with the cameras as a .glb (``export.preview``), None if not made.
    """

    run_dir: Path
    input_depth: Path
    video: Path
    depth_video: Path
    side_by_side: Path
    point_cloud: Path | None
    downloads: list[Path]
    notes: list[str] = field(default_factory=list)
    scene: Path | None = None


class Generate(Protocol):
    """What the page calls to generate: a request and a tqdm-like progress wrapper in, the files out."""

    def __call__(self, request: GenerationRequest, progress_bar_cmd: ProgressBar) -> GenerationResult: ...


def zip_scene(run_dir: Path) -> Path:
    """`scene.zip` of the 3D export (points.ply, images/, sparse/0/), the layout COLMAP-based tools open."""
    members = [run_dir / "points.ply", *sorted((run_dir / "images").iterdir()),
               *sorted((run_dir / "sparse" / "0").iterdir())]
    path = run_dir / "scene.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            archive.write(member, member.relative_to(run_dir).as_posix())
    return path


class PipelineGenerator:
    """Runs a ``DualCamCtrlPipeline`` for the app and writes one folder per generation under `output_root`."""

    def __init__(
        self,
        pipe: DualCamCtrlPipeline,
        output_root: str | Path,
        depth_model: str = DEFAULT_DEPTH_MODEL,
        fps: int = 16,
        tiled: bool = True,
        chunk_frames: int = CLIP_FRAMES,
    ) -> None:
        self.pipe = pipe
        self.output_root = Path(output_root)
        self.depth_model = depth_model
        self.fps = fps
        self.tiled = tiled
        #: Requests of more frames are generated as chained clips of this length (``world.generate_long``).
        self.chunk_frames = chunk_frames

    def load_depth_estimator(self) -> DepthEstimator:
        """The automatic depth model; a ValueError saying what to do when it cannot be loaded."""
        from ..pipeline.setup import load_depth_estimator

        return load_depth_estimator(
            self.depth_model, tiny=False, device=self.pipe.device, why="no depth map was uploaded and ",
            remedy="upload a depth map or start the app with --depth-model pointing to a local copy",
        )

    def __call__(self, request: GenerationRequest, progress_bar_cmd: ProgressBar) -> GenerationResult:
        """Generate, save the run folder, export the point cloud; the depth model is loaded when first needed."""
        if request.depth is None and self.pipe.depth_estimator is None:
            self.pipe.depth_estimator = self.load_depth_estimator()
        arguments = dict(
            prompt=request.prompt, negative_prompt=request.negative_prompt, input_image=request.image,
            input_depth=request.depth, camera=request.camera, height=request.height, width=request.width,
            num_frames=request.num_frames, num_inference_steps=request.num_inference_steps,
            cfg_scale=request.cfg_scale, seed=request.seed, tiled=self.tiled, progress_bar_cmd=progress_bar_cmd,
            resample_camera=request.resample_camera,
        )
        if request.num_frames > self.chunk_frames:
            from ..world import generate_long

            output = generate_long(self.pipe, **arguments, chunk_frames=self.chunk_frames)
        else:
            output = self.pipe(**arguments)
        self.output_root.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=self.output_root))
        files = output.save(run_dir, fps=self.fps)
        notes = [] if request.depth is not None else ["The depth map of the first frame was estimated automatically."]
        downloads = [files[name] for name in ("video.mp4", "depth.mp4", "side_by_side.mp4", "params.json",
                                              "world.ply") if name in files]
        cloud = None
        try:
            points = export_run(run_dir)["points.ply"]
        except ValueError as error:
            notes.append(f"No point cloud: {error}")
            point_cloud_view = None
        else:
            cloud = read_ply(points)
            point_cloud_view = write_ply(run_dir / "points_view.ply", PointCloud(cloud.points * VIEWER_AXES,
                                                                                 cloud.colors))
            downloads += [points, zip_scene(run_dir)]
        # The export's cloud lies in the first camera's axes, where the generated cameras start.
        scene = write_scene(run_dir / SCENE_FILE, output.trajectory, cloud)
        downloads.append(scene)
        return GenerationResult(
            run_dir=run_dir, input_depth=files[INPUT_DEPTH_FILE], video=files["video.mp4"],
            depth_video=files["depth.mp4"], side_by_side=files["side_by_side.mp4"], point_cloud=point_cloud_view,
            downloads=downloads, notes=notes, scene=scene,
        )

"""`dualcam eval` on folders of rendered clips, and the helpers that pair clips and prepare references."""
import csv
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.cli import main
from diffsynth_dualcam.eval.render import SyntheticScene
from diffsynth_dualcam.eval.report import find_clip_pairs, fov_intrinsics, reference_for_video, summarize

SIZE = 256
NUM_FRAMES = 10


@pytest.fixture(scope="module")
def clip_folders(tmp_path_factory):
    """Two rendered clips: `truck` as an H.264 video with a JSON trajectory, `orbit` as a frame folder with a
    RealEstate10K text trajectory (640x360 intrinsics); plus `extra.mp4`, a video without a trajectory.
    Returns the two folders and the intrinsics each clip was rendered with."""
    root = tmp_path_factory.mktemp("eval_clips")
    videos, trajectories = root / "videos", root / "trajectories"
    videos.mkdir()
    trajectories.mkdir()
    scene = SyntheticScene(seed=1, texture_size=128)
    truck = CameraTrajectory.preset("truck_right", NUM_FRAMES, speed=14, fx=0.9, source_size=(SIZE, SIZE))
    # RealEstate10K-style intrinsics of a 640x360 source: the evaluation must cover-crop them to the square video.
    orbit = CameraTrajectory.preset("orbit_right", NUM_FRAMES, distance=4.0, degrees_per_frame=3.5, fx=0.5,
                                    source_size=(640, 360))
    iio.imwrite(videos / "truck.mp4", scene.render(truck, width=SIZE, height=SIZE).frames, fps=10, codec="libx264",
                quality=8, macro_block_size=1)
    truck.save(trajectories / "truck.json")
    orbit_as_rendered = orbit.cover_crop(target_size=(SIZE, SIZE))
    (videos / "orbit").mkdir()
    for index, frame in enumerate(scene.render(orbit_as_rendered, width=SIZE, height=SIZE).frames):
        Image.fromarray(frame).save(videos / "orbit" / f"{index:03d}.png")
    orbit.save(trajectories / "orbit.txt")
    iio.imwrite(videos / "extra.mp4", np.zeros((4, 32, 32, 3), dtype=np.uint8), fps=4, macro_block_size=1)
    rendered_intrinsics = {"truck": truck.intrinsics[0], "orbit": orbit_as_rendered.intrinsics[0]}
    return videos, trajectories, rendered_intrinsics


def test_eval_writes_report_csv_and_plots(clip_folders, tmp_path, capsys):
    videos, trajectories, rendered_intrinsics = clip_folders
    out = tmp_path / "results" / "report.json"
    code = main(["eval", "--videos", str(videos), "--trajectories", str(trajectories), "--out", str(out),
                 "--trials", "2", "--threads", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "failure rate" in printed and str(out) in printed and "extra" in printed

    report = json.loads(out.read_text())
    assert report["normalization"] == "max" and "max ||t||" in report["convention"]
    assert report["settings"]["resample"] is True
    assert report["unmatched_videos"] == ["extra"]
    assert [clip["name"] for clip in report["clips"]] == ["orbit", "truck"]
    summary = report["summary"]
    assert summary["num_clips"] == 2 and summary["num_trials"] == 4 and summary["failure_rate"] == 0.0
    for clip in report["clips"]:
        assert len(clip["trials"]) == 2 and clip["failures"] == 0
        # A mismatch here (a trajectory reader losing its source size) shows as degrees of RotErr below.
        np.testing.assert_allclose(clip["intrinsics"], rendered_intrinsics[clip["name"]], rtol=1e-9)
        assert clip["rot_err_deg_mean"] < 0.5 and clip["trans_err_mean"] < 0.05
        assert clip["trial_median"]["rot_err_deg_mean"] < 0.5
        trial_means = [trial["rot_err_deg_mean"] for trial in clip["trials"]]
        assert all(trial["alignment"]["estimated_scale"] > 1e-9 for trial in clip["trials"])
        assert clip["rot_err_deg_mean"] == pytest.approx(np.mean(trial_means))
        assert clip["trial_median"]["rot_err_deg_mean"] == pytest.approx(np.median(trial_means))
        with Image.open(clip["plot"]) as plot:
            assert plot.format == "PNG" and plot.width > 400
    rot_means = [clip["rot_err_deg_mean"] for clip in report["clips"]]
    assert summary["rot_err_deg_mean"]["mean"] == pytest.approx(np.mean(rot_means))
    assert summary["rot_err_deg_mean"]["median"] == pytest.approx(np.median(rot_means))

    with open(out.with_suffix(".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["orbit", "truck"]
    assert float(rows[1]["cammc"]) == pytest.approx(report["clips"][1]["cammc"])
    assert {path.name for path in (out.parent / "report_plots").iterdir()} == {"orbit.png", "truck.png"}


def test_eval_reports_bad_folders_without_writing(clip_folders, tmp_path, capsys):
    videos, trajectories, _ = clip_folders
    out = tmp_path / "report.json"
    assert main(["eval", "--videos", str(tmp_path / "missing"), "--trajectories", str(trajectories),
                 "--out", str(out)]) == 2
    assert "--videos" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--videos", str(videos), "--trajectories", str(empty), "--out", str(out)]) == 2
    assert "no video" in capsys.readouterr().err
    assert main(["eval", "--videos", str(videos), "--trajectories", str(trajectories), "--out", str(out),
                 "--trials", "0"]) == 2
    assert "trials must be at least 1" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "clip.mp4").write_bytes(b"not a video")
    CameraTrajectory.preset("static", 4).save(broken / "clip.json")
    assert main(["eval", "--videos", str(broken), "--trajectories", str(broken), "--out", str(out)]) == 2
    assert "clip.mp4: cannot read the video" in capsys.readouterr().err
    zoom = tmp_path / "zoom"
    zoom.mkdir()
    iio.imwrite(zoom / "dolly.mp4", np.zeros((4, 32, 32, 3), dtype=np.uint8), fps=4, macro_block_size=1)
    CameraTrajectory.preset("zoom_in", 4).save(zoom / "dolly.json")
    assert main(["eval", "--videos", str(zoom), "--trajectories", str(zoom), "--out", str(out), "--trials", "1"]) == 2
    assert "clip dolly: the trajectory changes its intrinsics over the clip (a zoom)" in capsys.readouterr().err
    CameraTrajectory.preset("dolly_in", 3).save(zoom / "dolly.json")  # shorter than the video: only resampling fits
    assert main(["eval", "--videos", str(zoom), "--trajectories", str(zoom), "--out", str(out),
                 "--no-resample"]) == 2
    assert "clip dolly: trajectory has 3 frames but the video has 4; resample it" in capsys.readouterr().err
    assert not out.exists()


def test_clip_pairs_match_by_stem_and_refuse_ambiguity(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "a.json").write_text("{}")
    pairs, unmatched = find_clip_pairs(tmp_path, tmp_path)
    assert [(pair.name, pair.video.name, pair.trajectory.name) for pair in pairs] == [("a", "a.mp4", "a.json")]
    assert unmatched == ["b"]
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(ValueError, match="two trajectories for clip 'a'"):
        find_clip_pairs(tmp_path, tmp_path)


def test_plots_and_other_files_beside_trajectories_are_not_trajectories(tmp_path):
    (tmp_path / "lib.mp4").write_bytes(b"")
    CameraTrajectory.preset("dolly_in", 4).save(tmp_path / "lib.json")
    CameraTrajectory.preset("dolly_in", 4).plot(tmp_path / "lib.png")  # as `dualcam trajectory preset -o` writes
    (tmp_path / "lib.csv").write_text("")
    pairs, _ = find_clip_pairs(tmp_path, tmp_path)
    assert [(pair.name, pair.video.name, pair.trajectory.name) for pair in pairs] == [("lib", "lib.mp4", "lib.json")]
    with pytest.raises(ValueError, match="holds no run folder of dualcam generate"):
        find_clip_pairs(tmp_path)


def test_eval_takes_run_folders_and_prints_why_trials_failed(clip_folders, tmp_path, capsys):
    import torch

    from diffsynth_dualcam.pipeline.output import DualCamCtrlOutput

    videos, trajectories, _ = clip_folders
    truck = CameraTrajectory.load(trajectories / "truck.json")
    frames = [Image.fromarray(frame) for frame in iio.imread(videos / "truck.mp4")]
    black = [Image.new("RGB", (SIZE, SIZE))] * NUM_FRAMES  # nothing to reconstruct: every trial fails
    runs = tmp_path / "runs"
    for name, video in (("truck", frames), ("black", black)):  # written as `dualcam generate` writes a run
        DualCamCtrlOutput(video=video, depth_video=video, latents=torch.zeros(1), depth_latents=torch.zeros(1),
                          trajectory=truck, params={"seed": 0}).save(runs / name, fps=10)
    assert {"trajectory.png", "params.json", "depth.mp4"} <= {path.name for path in (runs / "truck").iterdir()}

    out = tmp_path / "report.json"
    assert main(["eval", "--videos", str(runs), "--out", str(out), "--trials", "1", "--threads", "2"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [clip["name"] for clip in report["clips"]] == ["black", "truck"]
    black_clip, truck_clip = report["clips"]
    assert truck_clip["failures"] == 0 and truck_clip["rot_err_deg_mean"] < 0.5
    assert black_clip["failures"] == 1
    assert f"clip black, trial 0 (seed 0) failed: {black_clip['trials'][0]['error']}" in printed
    assert "clip truck" not in printed

    # One run folder on its own.
    assert main(["eval", "--videos", str(runs / "truck"), "--out", str(out), "--trials", "1", "--no-plots"]) == 0
    assert [clip["name"] for clip in json.loads(out.read_text())["clips"]] == ["truck"]


def test_reference_is_cut_or_resampled_and_takes_fov_or_cover_cropped_intrinsics():
    requested = CameraTrajectory.preset("truck_right", 21, source_size=(640, 360))
    cut = reference_for_video(requested, 11, 320, 320, resample=False)
    np.testing.assert_allclose(cut.c2w, requested.c2w[:11])
    resampled = reference_for_video(requested, 11, 320, 320)  # by default, as generation does
    np.testing.assert_allclose(resampled.c2w[:, 0, 3], requested.c2w[::2, 0, 3], atol=1e-12)
    with pytest.raises(ValueError, match="has 21 frames but the video has 30; resample it"):
        reference_for_video(requested, 30, 320, 320, resample=False)
    assert len(reference_for_video(requested, 30, 320, 320)) == 30
    # 640x360 covering 320x320: the width is cropped, fx grows by (320 * 640 / 360) / 320.
    assert cut.intrinsics[0, 0] == pytest.approx(requested.intrinsics[0, 0] * 640 / 360)
    assert cut.intrinsics[0, 1] == pytest.approx(requested.intrinsics[0, 1])
    with_fov = reference_for_video(requested, 21, 480, 320, fov=90.0)
    np.testing.assert_allclose(with_fov.intrinsics[0], [0.5, 0.75, 0.5, 0.5])
    assert fov_intrinsics(60.0, 100, 100)[0] == pytest.approx(0.5 / math.tan(math.radians(30)))


def test_summary_skips_failed_clips_and_counts_failed_trials():
    def clip(name, value, failures):
        metrics = dict.fromkeys(("rot_err", "rot_err_deg", "rot_err_deg_mean", "trans_err", "trans_err_mean",
                                 "cammc", "cammc_mean"), value)
        return {"name": name, "trials": [{}, {}], "failures": failures, **metrics}

    summary = summarize([clip("a", 1.0, 0), clip("b", 3.0, 1), clip("c", 10.0, 0), clip("d", None, 2)])
    assert summary["rot_err"] == {"mean": pytest.approx(14 / 3), "median": 3.0}
    assert summary["failure_rate"] == pytest.approx(3 / 8)
    assert summary["clips_without_success"] == ["d"]

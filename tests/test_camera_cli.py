"""Trajectory plots and the `dualcam trajectory` command."""
import argparse

import numpy as np
import pytest
from PIL import Image

from diffsynth_dualcam.camera import CameraTrajectory
from diffsynth_dualcam.camera.plot import frustum_points, trajectory_figure
from diffsynth_dualcam.cli import trajectory as trajectory_cli


def run_trajectory(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    trajectory_cli.add_arguments(parser)
    return trajectory_cli.run(parser.parse_args(list(argv)))


def test_frustum_points_by_hand():
    # identity pose, fx = fy = 0.5, centred principal point: corners at (+-1, +-1, 1) * depth
    trajectory = CameraTrajectory(np.eye(4)[None], [[0.5, 0.5, 0.5, 0.5]])
    points = frustum_points(trajectory, depth=2.0)[0]
    np.testing.assert_allclose(points, [[0, 0, 0], [-2, -2, 2], [2, -2, 2], [2, 2, 2], [-2, 2, 2]])


@pytest.mark.parametrize("name", ["orbit_left", "static"])
def test_plot_writes_a_png(tmp_path, name):
    trajectory = CameraTrajectory.preset(name, num_frames=61)
    path = trajectory.plot(tmp_path / "plot.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 400
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10  # something was drawn
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def visible_tick_labels(axis, which: str) -> list:
    """The drawn tick labels of one axis of a panel: those whose ticks lie inside the view."""
    ticks, labels = getattr(axis, f"get_{which}ticks")(), getattr(axis, f"get_{which}ticklabels")()
    low, high = sorted(getattr(axis, f"get_{which}lim")())
    return [label for tick, label in zip(ticks, labels) if low <= tick <= high and label.get_text()]


@pytest.mark.parametrize("trajectory", [
    CameraTrajectory.preset("truck_right", 3, step=0.00037).compose(CameraTrajectory.preset("dolly_in", 3,
                                                                                            step=0.00011)),
    CameraTrajectory.preset("orbit_left", 2, degrees_per_frame=0.3),
    CameraTrajectory.preset("truck_right", 61, step=50.0),
    CameraTrajectory.preset("dolly_in", 5),
], ids=["tiny", "two_frames", "long", "short"])
def test_tick_labels_do_not_overlap_and_frames_are_whole(trajectory):
    figure = trajectory_figure(trajectory)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes[:2]:
        for which in ("x", "y"):
            boxes = [label.get_window_extent(renderer) for label in visible_tick_labels(axis, which)]
            assert len(boxes) >= 2, which
            for first, second in zip(boxes, boxes[1:]):
                assert not first.overlaps(second), (which, [label.get_text() for label in
                                                            visible_tick_labels(axis, which)])
    colorbar = figure.axes[2]
    frames = [float(label.get_text().replace("\u2212", "-")) for label in visible_tick_labels(colorbar, "y")]
    assert frames and all(frame == int(frame) for frame in frames)


def test_plot_single_frame(tmp_path):
    CameraTrajectory.preset("static", num_frames=1).plot(tmp_path / "one.png")
    assert (tmp_path / "one.png").stat().st_size > 0


def test_preset_command_writes_trajectory_and_plot(tmp_path, capsys):
    output = tmp_path / "move.json"
    code = run_trajectory("preset", "dolly_in+pan_left", "-o", str(output), "--num-frames", "9",
                          "--param", "step=0.02", "--param", "degrees_per_frame=1")
    assert code == 0
    trajectory = CameraTrajectory.load(output)
    expected = CameraTrajectory.preset("dolly_in", 9, step=0.02).compose(
        CameraTrajectory.preset("pan_left", 9, degrees_per_frame=1.0))
    np.testing.assert_allclose(trajectory.c2w, expected.c2w, atol=1e-15)
    printed = capsys.readouterr().out
    assert f"trajectory: {output}" in printed and f"plot: {tmp_path / 'move.png'}" in printed
    assert (tmp_path / "move.png").is_file()


def test_preset_list_and_errors(capsys):
    assert run_trajectory("preset", "--list") == 0
    listed = capsys.readouterr().out
    assert "orbit_left" in listed and "[distance=1.0, degrees_per_frame=0.5]" in listed
    assert "--num-frames, --speed, --fx and --source-size" in listed
    with pytest.raises(ValueError, match="takes parameter\\(s\\) radius"):
        run_trajectory("preset", "pan_left", "--param", "radius=1")
    with pytest.raises(ValueError, match="KEY=NUMBER"):
        run_trajectory("preset", "pan_left", "--param", "radius")


def test_convert_and_show(demo_dir, tmp_path, capsys):
    output = tmp_path / "colmap"
    assert run_trajectory("convert", str(demo_dir / "route66.torch"), str(output), "--source-size", "640x360",
                          "--num-frames", "21", "--relative") == 0
    converted = CameraTrajectory.load(output)
    assert len(converted) == 21 and converted.source_size == (640, 360)
    np.testing.assert_allclose(converted.c2w[0], np.eye(4), atol=1e-12)
    assert run_trajectory("show", str(output), "--plot", str(tmp_path / "show.png")) == 0
    printed = capsys.readouterr().out
    assert "frames:            21" in printed and "source size:       640x360" in printed
    assert (tmp_path / "show.png").is_file()


def test_show_writes_its_plot_beside_the_input_and_prints_the_absolute_path(demo_dir, tmp_path, monkeypatch, capsys):
    source = tmp_path / "paths" / "route66.torch"
    source.parent.mkdir()
    source.write_bytes((demo_dir / "route66.torch").read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert run_trajectory("show", "../paths/route66.torch") == 0
    assert f"plot: {source.parent / 'route66_trajectory.png'}\n" in capsys.readouterr().out
    assert (source.parent / "route66_trajectory.png").is_file() and not list(elsewhere.iterdir())
    assert run_trajectory("show", "../paths/route66.torch", "--plot", "mine.png") == 0
    assert f"plot: {elsewhere / 'mine.png'}\n" in capsys.readouterr().out


def test_main_reports_bad_input_with_exit_code_2(demo_dir, tmp_path, capsys):
    from diffsynth_dualcam.cli import main

    sizeless = tmp_path / "sizeless.json"
    trajectory = CameraTrajectory.load(demo_dir / "seaside.torch")
    CameraTrajectory(trajectory.c2w, trajectory.intrinsics, source_size=None).save(sizeless)
    code = main(["trajectory", "convert", str(sizeless), str(tmp_path / "transforms.json")])
    assert code == 2
    assert "needs a source_size" in capsys.readouterr().err
    assert not (tmp_path / "transforms.json").exists()

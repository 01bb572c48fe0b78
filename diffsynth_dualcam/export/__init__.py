"""Generated runs as 3D files: lifting frames to point clouds, PLY, COLMAP models and 3D Gaussians (``export3d``),
and the camera path in the first frame's scene as a .glb (``preview``)."""

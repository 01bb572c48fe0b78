"""Web app: upload an image, choose a camera move, generate RGB + depth videos and a point cloud (docs/app.md)."""

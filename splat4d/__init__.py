"""splat4d: photos and videos to 3D and 4D Gaussian-splat scenes."""

__version__ = "0.1.0"

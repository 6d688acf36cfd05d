"""Reading and writing splat4d's files: atomic writes, checkpoints, 3DGS PLY."""

"""`python -m splat4d` is the `splat4d` command."""

from splat4d.cli import entrypoint

if __name__ == "__main__":
    entrypoint()

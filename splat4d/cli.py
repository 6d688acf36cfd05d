"""The `splat4d` command: each subcommand is a dataclass with a `main()`.

This is the composition root: the one core module allowed to import `pipelines` and `viewer`, and only inside
subcommands' `main()`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from splat4d.data.synthetic import SampleConfig, load_recipe, write_sample_scene

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "assets" / "samples" / "static.json"


@dataclass
class Sample:
    """Generate a procedural sample scene (ray-traced analytic shapes with photo textures) as a nerfstudio dataset."""

    out: tyro.conf.Positional[Path]
    """Output folder (must be empty or absent unless --overwrite)."""
    dynamic: bool = False
    """Moving objects; each frame carries a time."""
    views: int | None = None
    """Number of views (static / monocular) — overrides the recipe."""
    recipe: Path | None = None
    """JSON recipe (see assets/samples/); the defaults of SampleConfig when absent."""
    config: Annotated[SampleConfig, tyro.conf.arg(name="cfg")] = field(default_factory=SampleConfig)
    """Fine-grained settings, used when no recipe is given."""
    overwrite: bool = False

    def main(self) -> None:
        cfg = load_recipe(self.recipe) if self.recipe is not None else self.config
        if self.dynamic:
            cfg.dynamic = True
        if self.views is not None:
            cfg.n_views = self.views
        path = write_sample_scene(cfg, self.out, overwrite=self.overwrite)
        print(f"wrote {path}")


@dataclass
class Demo:
    """Generate the bundled sample scene and render a preview of it (what `make demo` runs)."""

    out: Path = Path("out/demo")
    """Output folder; the scene goes to OUT/scene and the preview to OUT/preview.png."""
    recipe: Path = DEFAULT_RECIPE
    device: str = "cpu"
    """Torch device for rendering ("cpu" or "cuda")."""

    def main(self) -> None:
        from splat4d.preview import render_points_preview

        scene = self.out / "scene"
        write_sample_scene(load_recipe(self.recipe), scene, overwrite=True)
        png = render_points_preview(scene, self.out / "preview.png", device=self.device)
        print(f"sample scene: {scene}\npreview:      {png}")


COMMANDS = {
    "sample": Sample,
    "demo": Demo,
}


def entrypoint() -> None:
    tyro.extras.subcommand_cli_from_dict(
        COMMANDS, description="splat4d: photos and videos to Gaussian splats."
    ).main()

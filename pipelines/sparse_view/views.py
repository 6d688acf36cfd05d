"""Which views a sparse-view run trains on, and the inputs it refuses.

`--views k` keeps k of the dataset's training views, chosen by farthest-point sampling of the camera centres (the
rule SpaRe's benchmark and most few-shot protocols use in spirit: views spread over the capture, not k
neighbours): start from the first training camera, then repeatedly add the training camera whose distance to the
nearest camera already chosen is largest (the lowest index on ties). The rule is deterministic, so a scene folder
reads back with the same views. Evaluation uses the dataset's own test views; the training views not chosen are
dropped from the scene (so `cameras.json` and the viewer list only the views used), unless the dataset has no
test views, in which case they become the test views.

Initial points: a posed dataset without a point cloud (Blender scenes) gets points triangulated from the chosen
training views at their known poses (`splat4d.data.triangulate`, cached in the scene's work folder, so a scene
folder reads back with the same points). When fewer than `triangulation.min_points` triangulate (typically 3
views far apart, which share too few features), photos with an alpha channel get random points carved to their
visual hull (`silhouettes`; seeded, so a scene folder reads back with the same points), and others none, so that
training starts from random points.
"""

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from pipelines.sparse_view.silhouettes import SilhouetteConfig, photo_alphas, visual_hull_points
from splat4d.data import detect_format, load_scene
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.triangulate import with_triangulated_points

UNPOSED_FORMATS = ("images", "video")
"""Inputs that would need structure from motion to get poses."""


def farthest_views(centers: Float[Tensor, "N 3"], k: int) -> list[int]:
    """Indices of `k` of the cameras with centres `centers`, by farthest-point sampling from camera 0.

    Returns:
        The indices in the order they were picked (0 first).
    """
    n = len(centers)
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} views")
    c = centers.detach().double().cpu()
    chosen = [0]
    nearest = (c - c[0]).norm(dim=-1)  # distance of every camera to the chosen set
    for _ in range(k - 1):
        nearest[chosen] = -1.0  # never pick a camera twice (duplicated positions have distance 0)
        pick = int(nearest.argmax())  # argmax returns the first maximum: the lowest index on ties
        chosen.append(pick)
        nearest = torch.minimum(nearest, (c - c[pick]).norm(dim=-1))
    return chosen


def subset_scene(scene: SceneData, train: list[int], test: list[int]) -> SceneData:
    """`scene` reduced to the views `train` and `test` (indices into it), renumbered in file order."""
    keep = sorted(set(train) | set(test))
    new_index = {old: new for new, old in enumerate(keep)}
    masks = None if scene.mask_paths is None else [scene.mask_paths[i] for i in keep]
    return SceneData(
        cameras=scene.cameras[torch.as_tensor(keep, dtype=torch.long)],
        image_paths=[scene.image_paths[i] for i in keep],
        depth_paths=[scene.depth_paths[i] for i in keep],
        train_indices=sorted(new_index[i] for i in train),
        test_indices=sorted(new_index[i] for i in test),
        points=scene.points,
        point_colors=scene.point_colors,
        mask_paths=masks,
        background=scene.background,
        metadata={**scene.metadata, "source_views": keep},
    )


def even_views(n: int, k: int) -> list[int]:
    """`k` of `n` views in file order, evenly spaced from the first to the last (rounded to the nearest): the
    LLFF sparse-view protocol (FSGS, DNGaussian, CoR-GS pick `linspace(0, n - 1, k)` of the non-test images)."""
    if not 1 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} views")
    if k == 1:
        return [0]
    return sorted({int(np.floor(i * (n - 1) / (k - 1) + 0.5)) for i in range(k)})


def view_rule(scene: SceneData, rule: str = "auto") -> str:
    """The rule `select_views` applies: `rule`, or for "auto" "even" on LLFF datasets and "farthest" otherwise."""
    if rule == "auto":
        return "even" if scene.metadata.get("format") == "llff" else "farthest"
    return rule


def select_views(scene: SceneData, k: int, rule: str = "auto") -> SceneData:
    """`scene` with k of its training views (by `view_rule`: farthest-point sampling of their centres from the
    first one, or evenly spaced in file order) and its test views (or, when it has none, the training views not
    picked). `metadata["view_rule"]` records the rule applied."""
    n = len(scene.train_indices)
    if not 1 <= k <= n:
        raise DatasetError(f"--views {k}: the dataset has {n} training views; choose 1 to {n}")
    rule = view_rule(scene, rule)
    if rule == "even":
        picked = even_views(n, k)
    else:
        picked = farthest_views(
            scene.cameras.centers[torch.as_tensor(scene.train_indices, dtype=torch.long)], k
        )
    train = [scene.train_indices[i] for i in picked]
    test = scene.test_indices or [i for i in scene.train_indices if i not in set(train)]
    subset = subset_scene(scene, train, test)
    subset.metadata["view_rule"] = rule
    return subset


def load_sparse_scene(cfg: Any, workdir: Path) -> SceneData:
    """The scene of `cfg.data`, refused when it has no poses, reduced to `cfg.views` training views when set."""
    path = Path(cfg.data.path)
    name = detect_format(path) if cfg.data.format == "auto" else cfg.data.format
    if name in UNPOSED_FORMATS:
        raise DatasetError(
            f"{path}: the sparse pipeline needs posed views (a nerfstudio transforms.json, Blender or COLMAP "
            f"dataset) and does not run structure from motion, which is unreliable on 3 to 9 photos; pose them "
            f"first (e.g. COLMAP with more photos of the scene) or use `--pipeline static` with more photos"
        )
    scene = load_scene(cfg.data, workdir)
    scene = scene if cfg.views is None else select_views(scene, cfg.views, cfg.view_rule)
    mode = cfg.triangulation.mode
    if mode == "always" or (mode == "auto" and scene.points is None):
        scene = with_triangulated_points(scene, cfg.triangulation, Path(workdir) / "triangulation")
    if scene.points is None and cfg.silhouette.hull_init:
        scene = with_hull_points(scene, cfg.silhouette, cfg.init.random_points, cfg.init.seed)
    return scene


def with_hull_points(scene: SceneData, cfg: SilhouetteConfig, n: int, seed: int) -> SceneData:
    """`scene` with `n` points inside the visual hull of its training photos' alpha (`silhouettes`), or as it is
    when a training photo has no alpha channel. `metadata["hull_points"]` says how many."""
    alphas = photo_alphas(scene, scene.train_indices)
    if alphas is None:
        return scene
    points, colours = visual_hull_points(scene, alphas, n, cfg, seed)
    return dataclasses.replace(
        scene,
        points=points.numpy(),
        point_colors=colours.numpy(),
        metadata={**scene.metadata, "hull_points": len(points)},
    )

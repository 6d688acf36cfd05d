"""Geometric accuracy of a reconstructed mesh against a ground-truth mesh: accuracy, completeness, Chamfer
distance and F-score at a distance threshold, on points sampled uniformly over both surfaces (the protocol of
DTU, Aanæs et al. 2016, and Tanks and Temples, Knapitsch et al. 2017).

    splat4d eval-mesh scene/exports/mesh.ply sample/mesh.ply --out mesh_metrics.json

Definitions, with P the points sampled on the prediction, G those on the ground truth and d(x, S) the distance
from x to the nearest point of S:

- accuracy = mean over P of d(p, G); completeness = mean over G of d(g, P);
- Chamfer distance = (accuracy + completeness) / 2 (the symmetric mean, in world units);
- precision = share of P with d(p, G) < τ; recall = share of G with d(g, P) < τ; F-score = 2PR / (P + R).

The default τ is 1% of the scene extent, where the extent is the diagonal of the ground-truth mesh's axis-aligned
bounding box. Nearest neighbours come from scipy's cKDTree, so the distances are point-to-sampled-point: with
the default 200k samples their bias is far below τ.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import trimesh
import tyro

from splat4d.errors import UserError
from splat4d.io.atomic import atomic_write_text

DEFAULT_SAMPLES = 200_000
DEFAULT_THRESHOLD_FRACTION = 0.01
"""τ as a fraction of the ground truth's bounding-box diagonal."""


@dataclass(frozen=True)
class MeshMetrics:
    accuracy: float
    """Mean distance from the prediction to the ground truth (world units)."""
    completeness: float
    """Mean distance from the ground truth to the prediction."""
    chamfer: float
    """(accuracy + completeness) / 2."""
    precision: float
    recall: float
    fscore: float
    threshold: float
    """τ, world units."""
    extent: float
    """Diagonal of the ground truth's bounding box."""
    samples: int


def load_mesh(path: Path) -> trimesh.Trimesh:
    """A mesh file (.ply, .obj, .glb, ...) as one Trimesh (scenes are concatenated).

    Raises:
        UserError: naming the file, when it is missing, unreadable, not a triangle mesh or holds non-finite
            vertices.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh's loaders raise many types for damaged files
        raise UserError(f"{path}: not a readable mesh ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise UserError(f"{path}: not a triangle mesh (no faces)")
    if not np.isfinite(loaded.vertices).all():
        raise UserError(f"{path}: has non-finite vertex coordinates")
    return loaded


def crop_mesh(mesh: trimesh.Trimesh, bounds: Sequence[float | int] | np.ndarray) -> trimesh.Trimesh:
    """The faces whose centroid lies in the box (xmin, ymin, zmin, xmax, ymax, zmax)."""
    b = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
    centroids = mesh.triangles_center
    keep = np.all((centroids >= b[0]) & (centroids <= b[1]), axis=1)
    out = mesh.copy()
    out.update_faces(keep)
    out.remove_unreferenced_vertices()
    return out


def sample_points(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> np.ndarray:
    """`count` points uniformly over the surface (by area), reproducibly. Returns [count, 3]."""
    if len(mesh.faces) == 0 or mesh.area <= 0:
        raise ValueError("cannot sample an empty mesh")
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64)


def nearest_distances(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from every query [Q, 3] to its nearest neighbour in `points` [P, 3]. Returns [Q]."""
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(points).query(queries, k=1, workers=-1)
    return distances


def point_metrics(pred: np.ndarray, gt: np.ndarray, threshold: float, extent: float) -> MeshMetrics:
    """Metrics between two point sets already sampled on the surfaces (see the module docstring)."""
    d_pred = nearest_distances(pred, gt)
    d_gt = nearest_distances(gt, pred)
    precision = float((d_pred < threshold).mean())
    recall = float((d_gt < threshold).mean())
    fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    accuracy, completeness = float(d_pred.mean()), float(d_gt.mean())
    return MeshMetrics(
        accuracy=accuracy,
        completeness=completeness,
        chamfer=(accuracy + completeness) / 2,
        precision=precision,
        recall=recall,
        fscore=fscore,
        threshold=float(threshold),
        extent=float(extent),
        samples=len(pred),
    )


def gt_extent(gt: trimesh.Trimesh) -> float:
    """The scene extent: diagonal of the ground-truth mesh's axis-aligned bounding box."""
    lo, hi = gt.bounds
    return float(np.linalg.norm(hi - lo))


def compare_meshes(
    pred: trimesh.Trimesh,
    gt: trimesh.Trimesh,
    threshold: float | None = None,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> MeshMetrics:
    """Accuracy, completeness, Chamfer and F-score of `pred` against `gt`.

    Args:
        threshold: τ in world units; None: 1% of the ground truth's bounding-box diagonal.
        samples: points sampled on each surface.
        seed: sampling seed, the same for both surfaces (so identical meshes score exactly 1 and 0).
    """
    extent = gt_extent(gt)
    tau = DEFAULT_THRESHOLD_FRACTION * extent if threshold is None else float(threshold)
    return point_metrics(sample_points(pred, samples, seed), sample_points(gt, samples, seed), tau, extent)


@dataclass
class EvalMesh:
    """Compare a mesh with a ground-truth mesh: accuracy, completeness, Chamfer distance and F-score at τ (default
    1% of the ground truth's bounding-box diagonal), on points sampled over both surfaces."""

    mesh: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="MESH")]
    """The reconstructed mesh (.ply, .obj, .glb)."""
    gt: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="GT")]
    """The ground-truth mesh, in the same world frame and units."""
    threshold: float | None = None
    """F-score distance τ in world units; default: 1% of GT's bounding-box diagonal."""
    samples: int = DEFAULT_SAMPLES
    """Points sampled on each surface."""
    crop: tuple[float, float, float, float, float, float] | None = None
    """Compare only faces whose centroid is in this box (xmin ymin zmin xmax ymax zmax), both meshes; τ's
    default is then taken from the cropped ground truth."""
    seed: int = 0
    out: Path | None = None
    """Also write the metrics as JSON here."""

    def main(self) -> MeshMetrics:
        try:
            pred, gt = load_mesh(self.mesh), load_mesh(self.gt)
            if self.crop is not None:
                pred, gt = crop_mesh(pred, self.crop), crop_mesh(gt, self.crop)
            metrics = compare_meshes(pred, gt, self.threshold, self.samples, self.seed)
        except (OSError, ValueError) as exc:
            raise UserError(str(exc)) from None
        print(
            f"{self.mesh}: F-score {metrics.fscore:.3f} (precision {metrics.precision:.3f}, recall "
            f"{metrics.recall:.3f}) at τ = {metrics.threshold:.4g}; Chamfer {metrics.chamfer:.4g} "
            f"(accuracy {metrics.accuracy:.4g}, completeness {metrics.completeness:.4g})"
        )
        if self.out is not None:
            doc = {"mesh": str(self.mesh), "gt": str(self.gt), "crop": self.crop, **asdict(metrics)}
            atomic_write_text(self.out, json.dumps(doc, indent=2) + "\n")
        return metrics

"""Points for posed views that come without a point cloud: SIFT features matched under the known epipolar geometry
and triangulated with pycolmap, the cameras held at the dataset's poses and intrinsics (nothing but the points is
estimated, so it works where structure from motion on a few photos fails).

Stages, in `<workdir>` (one folder, reused while the views' images, cameras and the settings are unchanged:
stamp.json):

    images/        the views as training sees them (composited onto the scene's background), PNG
    database.db    SIFT keypoints and descriptors (pycolmap), the matches and their two-view geometries
    model/         the known cameras and poses with the triangulated points (COLMAP binary model)

Why the matching is done here and not by `pycolmap.match_exhaustive`: COLMAP verifies each pair by estimating its
epipolar geometry with RANSAC, which needs a good share of correct putative matches. A few photos far apart (3
views around an object) give too few, RANSAC settles on a wrong geometry and nothing triangulates. With the poses
known, the geometry need not be estimated: a feature's match in the other image lies on its epipolar line
(within `epipolar_max_error` pixels), so only features near that line compete for the ratio test. That keeps the
matches that a global nearest-neighbour search loses to look-alikes elsewhere in the image, and rejects wrong
matches by construction. `pycolmap.triangulate_points` then builds tracks over all views, triangulates them and
refines the points with every pose and camera constant.

pycolmap is imported here only when points are triangulated (`splat4d.optional`). Without it, mode "auto"
starts from random points with a warning and mode "always" is an error.
"""

import dataclasses
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import imageio.v3 as iio
import numpy as np
from jaxtyping import Float

from splat4d.cameras import Cameras
from splat4d.data.base import SceneData, VideoFrame
from splat4d.data.dataset import ImageDataset
from splat4d.data.undistort import fingerprint, quiet_colmap, replace_dir, stamp_matches
from splat4d.errors import UserError
from splat4d.optional import require

PURPOSE = "triangulate initial points"

SIFT_DESCRIPTOR_NORM = 512.0
"""COLMAP stores unit SIFT descriptors as uint8 scaled by 512 (feature/utils.cc, FeatureDescriptorsToUnsignedByte)."""


@dataclass
class TriangulationConfig:
    """Initial points triangulated from the training views at their known poses (`splat4d.data.triangulate`)."""

    mode: Literal["auto", "always", "never"] = "auto"
    """"auto": when the dataset has no point cloud; "always": also replace the dataset's (one from all its views
    knows what the chosen views never saw); "never": keep the dataset's, or start from random points."""
    min_points: int = 100
    """With fewer triangulated points than this, start from random points instead (`InitConfig.random_points`)."""
    max_num_features: int = 4096
    """SIFT features per image."""
    peak_threshold: float = 0.0067
    """SIFT's contrast threshold (COLMAP's default 0.0067); lower finds more features in low-contrast images."""
    epipolar_max_error: float = 2.0
    """A match lies within this many pixels of the other feature's epipolar line (both ways)."""
    max_ratio: float = 0.8
    """Lowe's ratio test among the candidates near the epipolar line."""
    max_reprojection_error: float = 2.0
    """Triangulated points with a larger mean reprojection error (pixels) are dropped."""
    min_angle: float = 2.0
    """Least triangulation angle (degrees) of a kept point; smaller ones have unreliable depth."""
    min_track_length: int = 3
    """Keep points seen in at least this many views (fewer when there are fewer views). A match between two views
    satisfies the epipolar constraint wherever on the line it is, so two-view points cannot be checked: on the
    procedural scene with 9 views, 40% of them are off the surface, against 2% of those seen three times."""
    num_threads: int = -1
    """Threads for SIFT and triangulation (-1: all cores)."""


class TriangulatedPoints(NamedTuple):
    points: Float[np.ndarray, "P 3"]
    colors: Float[np.ndarray, "P 3"]
    """In [0, 1]."""
    errors: Float[np.ndarray, " P"]
    """Mean reprojection error (pixels)."""
    track_lengths: np.ndarray
    """Number of views each point is seen in (int, [P])."""


def fundamental_matrix(cameras: Cameras, a: int, b: int) -> Float[np.ndarray, "3 3"]:
    """F with x_b^T F x_a = 0 for pixel coordinates (homogeneous) of one world point in cameras a and b."""
    T_a = cameras.T_cam_world[a].double().cpu().numpy()
    T_b = cameras.T_cam_world[b].double().cpu().numpy()
    T_b_a = T_b @ np.linalg.inv(T_a)  # camera a → camera b
    R, t = T_b_a[:3, :3], T_b_a[:3, 3]
    t_cross = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    K_a = cameras.Ks[a].double().cpu().numpy()
    K_b = cameras.Ks[b].double().cpu().numpy()
    return np.linalg.inv(K_b).T @ t_cross @ R @ np.linalg.inv(K_a)


def _line_distances(F: np.ndarray, xy_a: np.ndarray, xy_b: np.ndarray) -> np.ndarray:
    """[Na, Nb]: the larger of the two point-to-epipolar-line distances (pixels) of each pair of features."""
    ha = np.concatenate([xy_a, np.ones((len(xy_a), 1))], axis=1)
    hb = np.concatenate([xy_b, np.ones((len(xy_b), 1))], axis=1)
    lines_b = ha @ F.T  # epipolar line in b of each feature of a: F x_a
    lines_a = hb @ F  # epipolar line in a of each feature of b: F^T x_b
    algebraic = np.abs(ha @ F.T @ hb.T)  # |x_b^T F x_a|
    to_b = algebraic / np.linalg.norm(lines_b[:, :2], axis=1, keepdims=True).clip(1e-12)
    to_a = algebraic / np.linalg.norm(lines_a[:, :2], axis=1)[None].clip(1e-12)
    return np.maximum(to_a, to_b)


def epipolar_matches(
    xy_a: Float[np.ndarray, "Na 2"],
    desc_a: np.ndarray,
    xy_b: Float[np.ndarray, "Nb 2"],
    desc_b: np.ndarray,
    F: Float[np.ndarray, "3 3"],
    max_error: float,
    max_ratio: float,
) -> np.ndarray:
    """Mutual nearest neighbours by descriptor among the feature pairs within `max_error` pixels of each other's
    epipolar line, that pass the ratio test against the second-nearest such candidate.

    Args:
        xy_a, xy_b: keypoint positions (pixels) in images a and b.
        desc_a, desc_b: their SIFT descriptors, [N, 128], unit rows (any positive scale).
        F: fundamental matrix from a to b (`fundamental_matrix`).

    Returns:
        [M, 2] indices (into a, into b) of the matches, uint32.
    """
    if len(xy_a) == 0 or len(xy_b) == 0:
        return np.zeros((0, 2), np.uint32)
    da = desc_a.astype(np.float32)
    db = desc_b.astype(np.float32)
    da /= np.linalg.norm(da, axis=1, keepdims=True).clip(1e-12)
    db /= np.linalg.norm(db, axis=1, keepdims=True).clip(1e-12)
    similarity = da @ db.T
    similarity[_line_distances(F, xy_a, xy_b) > max_error] = -np.inf
    rows = np.arange(len(xy_a))
    best_b = similarity.argmax(axis=1)
    best = similarity[rows, best_b]
    similarity[rows, best_b] = -np.inf
    second = similarity.max(axis=1)
    similarity[rows, best_b] = best
    best_a = similarity.argmax(axis=0)

    # Ratio of descriptor distances, with ||u - v||² = 2 − 2 u·v for unit vectors; no second candidate passes.
    def distance(cos: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip(2.0 - 2.0 * cos, 0.0, None))

    with np.errstate(invalid="ignore"):
        passes = np.isfinite(best) & (
            ~np.isfinite(second)
            | (distance(best) < max_ratio * distance(np.where(np.isfinite(second), second, 0)))
        )
    mutual = best_a[best_b] == rows
    keep = passes & mutual
    return np.stack([rows[keep], best_b[keep]], axis=1).astype(np.uint32)


def _image_fingerprint(image: Path | VideoFrame) -> list | None:
    if isinstance(image, VideoFrame):
        return [fingerprint(image.path), image.index]
    return fingerprint(Path(image))


def _cache_key(scene: SceneData, indices: list[int], cfg: TriangulationConfig) -> dict:
    cams = scene.cameras
    views = [
        {
            "image": _image_fingerprint(scene.image_paths[i]),
            "K": np.round(cams.Ks[i].double().numpy(), 6).tolist(),
            "T_world_cam": np.round(cams.T_world_cam[i].double().numpy(), 6).tolist(),
        }
        for i in indices
    ]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("mode", "min_points", "num_threads")}
    # The one size when the views share it (the key uniform scenes have always had), else each view's.
    size = [cams.width, cams.height] if cams.is_uniform else [list(s) for s in cams.sizes]
    return {"views": views, "background": scene.background, "size": size, **settings}


def _write_images(scene: SceneData, indices: list[int], folder: Path) -> list[str]:
    data = ImageDataset(scene, indices, 1)
    names = []
    for k in range(len(data)):
        name = f"view_{k:03d}.png"
        rgb = (data[k].rgb[0].numpy() * 255.0 + 0.5).astype(np.uint8)
        iio.imwrite(folder / name, rgb)
        names.append(name)
    return names


def _triangulate_into(folder: Path, scene: SceneData, indices: list[int], cfg: TriangulationConfig) -> None:
    images_dir = folder / "images"
    images_dir.mkdir()
    pycolmap = require("pycolmap", PURPOSE)
    names = _write_images(scene, indices, images_dir)
    cameras = scene.subset(indices)
    database_path = folder / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = cfg.num_threads
    extraction.sift.max_num_features = cfg.max_num_features
    extraction.sift.peak_threshold = cfg.peak_threshold
    pycolmap.extract_features(
        database_path,
        images_dir,
        image_names=names,
        camera_mode=pycolmap.CameraMode.PER_IMAGE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )

    reconstruction = pycolmap.Reconstruction()
    database = pycolmap.Database.open(database_path)
    try:
        images = sorted(database.read_all_images(), key=lambda image: names.index(image.name))
        features = []
        for k, image in enumerate(images):
            K = cameras.Ks[k].double().numpy()
            camera = pycolmap.Camera(
                model="PINHOLE",
                width=cameras.widths[k],
                height=cameras.heights[k],
                params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
                camera_id=image.camera_id,
            )
            database.update_camera(camera)
            reconstruction.add_camera_with_trivial_rig(camera)
            T_cam_world = cameras.T_cam_world[k].double().numpy()  # OpenCV axes, as COLMAP's cam_from_world
            reconstruction.add_image_with_trivial_frame(
                pycolmap.Image(name=image.name, camera_id=image.camera_id, image_id=image.image_id),
                pycolmap.Rigid3d(T_cam_world[:3, :4]),
            )
            keypoints = database.read_keypoints(image.image_id)[:, :2].astype(np.float64)
            features.append((keypoints, np.asarray(database.read_descriptors(image.image_id).data)))
        for a in range(len(images)):
            for b in range(a + 1, len(images)):
                F = fundamental_matrix(cameras, a, b)
                matches = epipolar_matches(
                    *features[a], *features[b], F, cfg.epipolar_max_error, cfg.max_ratio
                )
                ids = images[a].image_id, images[b].image_id
                database.write_matches(*ids, matches)
                geometry = pycolmap.TwoViewGeometry()
                geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
                geometry.F = F
                geometry.inlier_matches = matches
                database.write_two_view_geometry(*ids, geometry)
    finally:
        database.close()

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = cfg.num_threads
    options.mapper.filter_max_reproj_error = cfg.max_reprojection_error
    options.mapper.filter_min_tri_angle = cfg.min_angle
    options.triangulation.min_angle = cfg.min_angle
    (folder / "model").mkdir()
    pycolmap.triangulate_points(reconstruction, database_path, images_dir, folder / "model", options=options)


def triangulate_views(
    scene: SceneData, indices: list[int], cfg: TriangulationConfig, folder: Path
) -> TriangulatedPoints:
    """Triangulate points from the views `indices` of `scene` at their known poses, or reuse an identical earlier
    run in `folder`.

    Args:
        scene: the scene (its cameras in OpenCV axes, pinhole, as every reader gives them).
        indices: the views to use, at least 2.
        cfg: matching and filtering settings.
        folder: work folder (module docstring); replaced when the inputs changed.

    Returns:
        The points seen in at least 2 views that pass the reprojection-error and angle filters.

    Raises:
        UserError: pycolmap is not installed.
    """
    pycolmap = require("pycolmap", PURPOSE)
    if len(indices) < 2:
        raise ValueError(f"triangulation needs at least 2 views, got {len(indices)}")
    key = _cache_key(scene, indices, cfg)
    if not stamp_matches(folder, key):
        with quiet_colmap(), replace_dir(folder, key) as tmp:
            _triangulate_into(tmp, scene, indices, cfg)
    reconstruction = pycolmap.Reconstruction(folder / "model")
    points = list(reconstruction.points3D.values())
    xyz = np.array([p.xyz for p in points], np.float64).reshape(-1, 3)
    colors = np.array([p.color for p in points], np.float64).reshape(-1, 3) / 255.0
    errors = np.array([p.error for p in points], np.float64)
    lengths = np.array([p.track.length() for p in points], np.int64)
    keep = (errors <= cfg.max_reprojection_error) & (lengths >= min(cfg.min_track_length, len(indices)))
    return TriangulatedPoints(xyz[keep], colors[keep], errors[keep], lengths[keep])


def with_triangulated_points(
    scene: SceneData, cfg: TriangulationConfig, folder: Path, indices: list[int] | None = None
) -> SceneData:
    """`scene` with points triangulated from the views `indices` (default: its training views) at their poses, or
    with none (so that training starts from random points) when fewer than `cfg.min_points` triangulate or there
    are fewer than 2 views. `metadata["triangulated_points"]` says how many triangulated.

    Without pycolmap, mode "auto" warns and returns `scene` with no points, as when too few triangulate.

    Raises:
        UserError: pycolmap is not installed and `cfg.mode` is "always".
    """
    indices = scene.train_indices if indices is None else indices
    found = None
    if len(indices) >= 2:
        try:
            require("pycolmap", PURPOSE)
        except UserError as exc:
            if cfg.mode != "auto":
                raise
            warnings.warn(f"{exc}; starting from random points instead", stacklevel=2)
        else:
            found = triangulate_views(scene, indices, cfg, folder)
    n = 0 if found is None else len(found.points)
    keep = found is not None and n >= cfg.min_points
    return dataclasses.replace(
        scene,
        points=found.points if keep else None,
        point_colors=found.colors if keep else None,
        metadata={**scene.metadata, "triangulated_points": n},
    )

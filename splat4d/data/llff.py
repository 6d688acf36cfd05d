"""Reader for LLFF forward-facing scenes (Mildenhall et al. 2019), the layout of the sparse-view benchmarks.

Layout:

    poses_bounds.npy   [N, 17]: per image a 3x5 [R | t | hwf] (camera-to-world, axes (down, right, backwards); hwf
                       the height, width and focal length of the original photos), then the near and far bounds
    images/            the original photos, in the order of the rows (sorted by name)
    images_<k>/        the same photos downsampled k times (e.g. images_8 at 504x378 for 4032x3024 originals)

A folder also holding COLMAP's `sparse/` (as LLFF's own distribution does) is read as LLFF: its poses are the ones
the published protocols use.

Which folder: `--data.downscale k` asks for 1/k of the original resolution. The photos are read from the folder
with the largest factor that does not exceed k (`images/` counting as factor 1); when none does, from the folder
with the smallest factor there is (LLFF sets often ship only `images_8/`). The factor that folder already applies
is recorded (`SceneData.metadata["prescaled"]`), and `ImageDataset` only downscales by what is left, so
`--data.downscale 8` on `images_8/` trains at 504x378, not 63x47. Intrinsics come from hwf scaled to the size of
the photos actually read (the factor is measured from the image size, so folders whose factor is not an exact
division still line up): fx = f W' / W, fy = f H' / H, principal point at the image centre.

The bounds are kept in `metadata["near"]`/`["far"]` (per image) and `["scene_depth"]` (min near, max far): the
depth range of the scene seen from the cameras, for initialisation inside the frustum.
"""

import re
from pathlib import Path

import numpy as np
import torch

from splat4d.cameras import Cameras
from splat4d.data.base import DatasetError, SceneData
from splat4d.data.checks import image_header_size
from splat4d.data.config import DataConfig
from splat4d.data.llff_poses import ASPECT_TOLERANCE, POSES_FILE, camera_of_row, load_poses_bounds

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FOLDER = re.compile(r"^images(?:_(\d+))?$")
SIZE_TOLERANCE = ASPECT_TOLERANCE
"""How far a folder's images may be from hwf / factor (relative) and still count as that factor."""


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def image_folders(root: Path) -> dict[int, Path]:
    """The photo folders of an LLFF scene by factor (`images` is 1, `images_8` is 8), those holding photos only."""
    folders = {}
    for child in Path(root).iterdir() if Path(root).is_dir() else []:
        m = _FOLDER.match(child.name)
        if m and child.is_dir() and _image_files(child):
            folders[int(m.group(1) or 1)] = child
    return dict(sorted(folders.items()))


def is_llff(path: Path) -> bool:
    """A folder holding `poses_bounds.npy` and an `images/` or `images_<k>/` folder of photos."""
    path = Path(path)
    return path.is_dir() and (path / POSES_FILE).is_file() and bool(image_folders(path))


def choose_folder(folders: dict[int, Path], downscale: int) -> tuple[int, Path]:
    """(factor, folder): the largest factor not above `downscale`, else the smallest there is."""
    below = [k for k in folders if k <= downscale]
    factor = max(below) if below else min(folders)
    return factor, folders[factor]


def read_llff(cfg: DataConfig, workdir: Path) -> SceneData:
    """Read the LLFF scene in the folder `cfg.path` (see the module docstring).

    Split: every `cfg.test_every`-th image (0, n, 2n, ...; 8 in the sparse-view protocols) is held out for testing
    (none when test_every < 1). The scene has no initial points.

    Raises:
        DatasetError: naming the file or folder when poses_bounds.npy is malformed, its row count differs from the
            number of photos, a photo is unreadable or the photos differ in size, or a pose or focal length is
            invalid.
    """
    del workdir
    root = Path(cfg.path)
    poses_path = root / POSES_FILE
    folders = image_folders(root)
    if not poses_path.is_file() or not folders:
        raise DatasetError(
            f"{root}: not an LLFF scene (needs {POSES_FILE} and images/ or images_<k>/ of photos)"
        )
    poses = load_poses_bounds(poses_path, rows="image")
    factor, folder = choose_folder(folders, cfg.downscale)
    files = _image_files(folder)
    if len(files) != len(poses):
        raise DatasetError(
            f"{poses_path}: has {len(poses)} rows but {folder} holds {len(files)} photos; give one row per photo, "
            "in file name order"
        )
    sizes = {f: image_header_size(f) for f in files}
    width, height = sizes[files[0]]
    for f, size in sizes.items():
        if size != (width, height):
            raise DatasetError(
                f"{f}: is {size[0]}x{size[1]} but {files[0].name} is {width}x{height}; the photos of an LLFF "
                "folder share one size"
            )
    mats = poses[:, :15].reshape(-1, 3, 5)
    bounds = poses[:, 15:17]
    Ks, T_world_cam = [], []
    for row, (pose, photo) in enumerate(zip(mats, files, strict=True)):
        K, T = camera_of_row(
            pose, width, height, poses_path, f"row {row} ({photo.name})", f"photos in {folder.name}/"
        )
        Ks.append(K)
        T_world_cam.append(T)
    if not (bounds > 0).all() or not (bounds[:, 1] > bounds[:, 0]).all():
        bad = int(np.flatnonzero(~((bounds > 0).all(1) & (bounds[:, 1] > bounds[:, 0])))[0])
        raise DatasetError(
            f"{poses_path}: row {bad} ({files[bad].name}): near and far bounds {bounds[bad].tolist()} must be "
            "positive with near < far; fix the last two columns"
        )
    measured = width / float(mats[0][1, 4])
    if factor > 1 and abs(measured * factor - 1) > SIZE_TOLERANCE:
        raise DatasetError(
            f"{folder}: photos are {width}x{height}, 1/{1 / measured:.3g} of the {mats[0][1, 4]:g}-pixel-wide "
            f"originals, not 1/{factor} as the folder name says; rename the folder or use the matching photos"
        )

    n = len(files)
    if cfg.test_every >= 1:
        test = list(range(0, n, cfg.test_every))
        train = [i for i in range(n) if i % cfg.test_every != 0]
    else:
        train, test = list(range(n)), []
    cameras = Cameras(
        T_world_cam=torch.from_numpy(np.stack(T_world_cam)).float(),
        Ks=torch.from_numpy(np.stack(Ks)).float(),
        width=width,
        height=height,
    )
    return SceneData(
        cameras=cameras,
        image_paths=files,
        depth_paths=[None] * n,
        train_indices=train,
        test_indices=test,
        metadata={
            "source": str(root),
            "format": "llff",
            "image_folder": folder.name,
            "prescaled": factor,
            "near": bounds[:, 0].tolist(),
            "far": bounds[:, 1].tolist(),
            "scene_depth": [float(bounds[:, 0].min()), float(bounds[:, 1].max())],
        },
    )

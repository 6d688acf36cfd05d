"""The output-folder contract: what a splat4d scene folder is, when splat4d may write into a folder, and what
`--overwrite` removes. Every command that writes into a scene folder goes through here.

- A **scene folder** is one that holds the marker file `.splat4d-scene`, which `splat4d reconstruct` writes when
  it first takes a folder. Folders made before the marker existed are recognised by their `config.yaml` when it
  is a splat4d run record (a mapping naming the `pipeline`, with its `config`); they get the marker on
  their next run. A file merely *named* `config.yaml`, `checkpoints/` or `point_cloud.ply` does not make a scene.
- `reconstruct -o OUT` writes into OUT only when OUT is absent, empty or a scene folder; anything else is refused
  before a byte is written, with or without `--overwrite`.
- `--overwrite` starts a scene folder over, once the new input has been read (a refused run changes nothing). It
  removes only what splat4d writes there (`SCENE_FILES`, the checkpoints `checkpoints/step-*.pt`, the evaluation
  renders `eval/<view>.png` of the views its `metrics.json` lists, and a pipeline's own state folders); other
  files in the folder (yours, `exports/`, the input cache `cache/`) stay.
- A run that fails before training starts (unreadable input, Ctrl-C during SfM) removes the folder again when it
  created it, or empties it again when it was empty (the folder itself, its permissions or a link to it stay), so
  no half-made scene is left behind.
"""

import json
import re
import shutil
from pathlib import Path
from typing import Any

from splat4d.errors import UserError
from splat4d.io.atomic import atomic_write_text

MARKER = ".splat4d-scene"
"""The file that makes a folder a splat4d scene (JSON: what wrote it)."""
CONFIG_FILE = "config.yaml"
SCENE_FILES = ("config.yaml", "cameras.json", "log.jsonl", "metrics.json", "point_cloud.ply")
"""Files of a scene folder that splat4d writes, and `--overwrite` removes (`config.yaml` is written anew)."""
_CHECKPOINT = re.compile(r"^step-\d+\.pt(\.corrupt)?$")
"""Checkpoints, and unreadable ones set aside by a resumed run (`splat4d.io.checkpoint`)."""


class SceneFolderError(UserError):
    """The output folder cannot be used as asked; the message says why and what to do."""


def _is_legacy_scene(folder: Path) -> bool:
    """A folder written before the marker: its config.yaml is a splat4d run record."""
    import yaml

    try:
        record = yaml.safe_load((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return is_run_record(record)


def is_run_record(record: object) -> bool:
    """Whether a loaded config.yaml is a run record as `splat4d reconstruct` writes it: a mapping naming the
    pipeline, with the pipeline's config as a mapping (and, in practice, the splat4d version)."""
    return isinstance(record, dict) and "pipeline" in record and isinstance(record.get("config"), dict)


def is_scene(folder: Path) -> bool:
    """Whether `folder` is a splat4d scene folder (see the module docstring)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / MARKER).is_file() or _is_legacy_scene(folder))


def is_empty(folder: Path) -> bool:
    return Path(folder).is_dir() and not any(Path(folder).iterdir())


def check_output_folder(out: Path) -> None:
    """Refuse, before anything is written, an `out` that is a file or a folder holding something else than a
    splat4d scene."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SceneFolderError(f"{out}: exists and is not a folder; choose another -o")
    if out.is_dir() and not is_empty(out) and not is_scene(out):
        raise SceneFolderError(
            f"{out}: folder is not empty and is not a splat4d scene (no {MARKER}); splat4d never writes into "
            "or deletes from it, with or without --overwrite: choose another -o"
        )


def claim(out: Path, version: str) -> None:
    """Create `out` if needed and mark it as a splat4d scene (after `check_output_folder`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).is_file():
        atomic_write_text(
            out / MARKER, json.dumps({"splat4d_scene": 1, "written_by": f"splat4d {version}"}) + "\n"
        )


def clear_outputs(out: Path, state_folders: tuple[str, ...] = ()) -> list[Path]:
    """Remove what splat4d wrote into the scene folder `out` (see the module docstring); returns what was removed.

    Raises:
        SceneFolderError: `out` is not a scene folder.
    """
    out = Path(out)
    if not is_scene(out):
        raise SceneFolderError(f"{out}: not a splat4d scene; --overwrite only ever replaces a splat4d scene")
    removed: list[Path] = []
    for path in _evaluation_renders(out):
        path.unlink()
        removed.append(path)
    for name in SCENE_FILES:
        if (out / name).is_file():
            (out / name).unlink()
            removed.append(out / name)
    folder = out / "checkpoints"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_file() and _CHECKPOINT.match(path.name):
            path.unlink()
            removed.append(path)
    for name in state_folders:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
            removed.append(out / name)
    return removed


def _evaluation_renders(out: Path) -> list[Path]:
    """The renders `splat4d.evaluate` wrote in `out/eval/`: one `<view>.png` per view its metrics.json lists (none
    when metrics.json is missing or unreadable: then nothing in eval/ is taken for splat4d's)."""
    try:
        views = json.loads((out / "metrics.json").read_text()).get("views", [])
        names = {str(view["name"]) for view in views}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError, KeyError):
        return []
    return [
        out / "eval" / f"{name}.png" for name in sorted(names) if (out / "eval" / f"{name}.png").is_file()
    ]


def read_record(out: Path) -> dict[str, Any]:
    """The run record (`config.yaml`) of the scene folder `out`, checked to be one.

    Raises:
        SceneFolderError: `out` is not a scene folder, or its config.yaml is missing or not a splat4d record.
    """
    import yaml

    out = Path(out)
    path = out / CONFIG_FILE
    if not out.is_dir():
        raise SceneFolderError(f"{out}: no such scene folder")
    if not path.is_file():
        raise SceneFolderError(f"{out}: no {CONFIG_FILE}; not a scene made by `splat4d reconstruct`")
    try:
        record = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SceneFolderError(
            f"{path}: not readable YAML ({type(exc).__name__}); rerun `splat4d reconstruct`"
        ) from None
    if not is_run_record(record):
        raise SceneFolderError(f"{path}: not a splat4d run record; not a scene made by `splat4d reconstruct`")
    return record

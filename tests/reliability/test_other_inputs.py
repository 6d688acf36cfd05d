"""Smaller inputs: meshes given to `eval-mesh` and recipes given to `sample` fail in one line naming the file."""

from tests.reliability.conftest import assert_one_line_error, run_cli


def _cube(path):
    import trimesh

    trimesh.creation.box().export(path)
    return path


def test_eval_mesh_names_a_missing_mesh(capsys, tmp_path):
    gt = _cube(tmp_path / "gt.ply")
    result = run_cli(capsys, "eval-mesh", tmp_path / "absent.ply", gt)
    assert "not found" in assert_one_line_error(result, tmp_path / "absent.ply")


def test_eval_mesh_names_a_damaged_mesh(capsys, tmp_path):
    gt = _cube(tmp_path / "gt.ply")
    broken = tmp_path / "broken.ply"
    broken.write_bytes(gt.read_bytes()[:40])
    assert_one_line_error(run_cli(capsys, "eval-mesh", broken, gt), broken)


def test_eval_mesh_refuses_non_finite_vertices(capsys, tmp_path):
    import numpy as np
    import trimesh

    gt = _cube(tmp_path / "gt.ply")
    box = trimesh.creation.box()
    box.vertices[0] = [np.nan, 0.0, 0.0]
    box.export(tmp_path / "nan.ply")
    assert "non-finite" in assert_one_line_error(
        run_cli(capsys, "eval-mesh", tmp_path / "nan.ply", gt), "nan.ply"
    )


def test_sample_names_a_broken_recipe(capsys, tmp_path):
    recipe = tmp_path / "recipe.json"
    for text in ("{ not json", '["a list"]', '{"no_such_key": 1}', '{"width": -3}'):
        recipe.write_text(text)
        result = run_cli(capsys, "sample", tmp_path / "out", "--recipe", recipe)
        assert_one_line_error(result, recipe)
        assert not (tmp_path / "out").exists()


def test_sample_refuses_bad_settings_in_one_line(capsys, tmp_path):
    assert_one_line_error(run_cli(capsys, "sample", tmp_path / "out", "--views", "0"), "--views")
    assert_one_line_error(run_cli(capsys, "sample", tmp_path / "out", "--cfg.width", "0"), "--cfg.width")

"""Exports of a trained scene: meshes, splat files, camera paths and videos."""

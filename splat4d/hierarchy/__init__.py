"""Temporal Gaussian hierarchy for long 4D videos (Xu et al. 2024, "Representing Long Volumetric Video with
Temporal Gaussian Hierarchy"): a tree of time segments, each holding the Gaussians whose lifespan it covers, stored
one file per segment and streamed so that only the segments of the rendered time are resident.

    hierarchy = build(gaussians4d, depth=6)            # tree.py, lifespan.py, build.py
    save_hierarchy(folder, hierarchy)                  # storage.py
    scene = HierarchicalScene(folder)                  # streaming.py (with cache.py)
    image = scene.render(cameras, t=0.42).rgb          # equals render(gaussians4d, cameras, t=0.42).rgb

Training streams too (`splat4d.hierarchy.training.StreamedTrainer`, with `segment_store.py`): one root-to-leaf
path of segments, with their Adam moments, is resident at a time, and `export` writes the folder above.
"""

from splat4d.hierarchy.build import Hierarchy as Hierarchy
from splat4d.hierarchy.build import assign as assign
from splat4d.hierarchy.build import build as build
from splat4d.hierarchy.build import concat as concat
from splat4d.hierarchy.build import flatten as flatten
from splat4d.hierarchy.cache import LRUCache as LRUCache
from splat4d.hierarchy.lifespan import DEFAULT_THRESHOLD as DEFAULT_THRESHOLD
from splat4d.hierarchy.lifespan import lifespan_factor as lifespan_factor
from splat4d.hierarchy.lifespan import lifespans as lifespans
from splat4d.hierarchy.storage import FORMAT_VERSION as FORMAT_VERSION
from splat4d.hierarchy.storage import MANIFEST_NAME as MANIFEST_NAME
from splat4d.hierarchy.storage import HierarchyFormatError as HierarchyFormatError
from splat4d.hierarchy.storage import Manifest as Manifest
from splat4d.hierarchy.storage import load_hierarchy as load_hierarchy
from splat4d.hierarchy.storage import read_manifest as read_manifest
from splat4d.hierarchy.storage import read_segment as read_segment
from splat4d.hierarchy.storage import save_hierarchy as save_hierarchy
from splat4d.hierarchy.storage import write_segments as write_segments
from splat4d.hierarchy.streaming import HierarchicalScene as HierarchicalScene
from splat4d.hierarchy.tree import Segment as Segment
from splat4d.hierarchy.tree import TimeTree as TimeTree

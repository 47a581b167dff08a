"""The zoo: tiny Llama models trained locally (a base, two skill parents, a stranger) and held-out lm-eval tasks."""

from mergescope.zoo.build import build_zoo
from mergescope.zoo.manifest import ZooManifest, ZooModel, ZooPair, ZooTask, load_zoo

__all__ = ["ZooManifest", "ZooModel", "ZooPair", "ZooTask", "build_zoo", "load_zoo"]

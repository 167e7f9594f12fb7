"""Lightning training systems for the zoo's models. ``zoo`` never imports this package."""

from tasks.base import ZooTask
from tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "ZooTask"]

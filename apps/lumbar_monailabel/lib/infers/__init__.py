from .landmarks import LandmarkInfer, NoModelError

__all__ = ["LandmarkInfer", "NoModelError"]

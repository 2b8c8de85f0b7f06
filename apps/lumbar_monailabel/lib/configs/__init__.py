from .lumbar_landmarks import LumbarLandmarks

__all__ = ["LumbarLandmarks"]

from .landmarks import LandmarkTrain

__all__ = ["LandmarkTrain"]

"""The dictionary form shared by the point -> map target transforms (:class:`~.corner.CornerHeatmapd`,
:class:`~.paf.PAFMapd`). MONAI's ``MapTransform`` applies a transform in place under each key; these targets are
written under a *new* key, which MONAI has no generic wrapper for."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["PointsToMapd"]


class PointsToMapd(MapTransform):
    """The points under ``keys`` -> ``transform(points)`` under ``output_key`` (for several keys
    ``<key>_<output_key>``); the points stay."""

    def __init__(self, keys: KeysCollection, transform: Callable, output_key: str,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = transform
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        for k in keys:
            d[self.output_key if len(keys) == 1 else f"{k}_{self.output_key}"] = self.transform(d[k])
        return d

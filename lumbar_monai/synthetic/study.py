"""``write_study_set``: a folder of synthetic studies in every format the project reads, plus a MONAI datalist.

Layout of ``out_dir``::

    images/case_0000.png        16-bit greyscale PNG (or .tif), values within BitsStored, bone bright
    annotations/case_0000.json  the project's landmark JSON (image path relative to the JSON)
    buu/case_0000.csv           BUU-LSPINE CSV layout
    dicom/case_0000.dcm         DX For Presentation; alternating MONOCHROME2 / MONOCHROME1 (inverted values)
                                and PixelSpacing / ImagerPixelSpacing-only
    datalist.json               MONAI decathlon-style lists: training / validation / test
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..io.annotations import LandmarkAnnotation, write_annotation_json, write_buu_csv
from ..io.atomic import atomic_path, atomic_write_json
from .config import SyntheticConfig
from .generator import SyntheticRadiograph, generate_radiograph

__all__ = ["write_study_set", "write_image", "case_seed", "write_case"]

_IMAGE_SUFFIX = {"png": ".png", "tiff": ".tif"}


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a set: independent streams from ``SeedSequence((seed, index))``."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a ``(H, W)`` uint16 image as 16-bit greyscale PNG or TIFF (by suffix), atomically."""
    from PIL import Image

    arr = np.ascontiguousarray(image, dtype=np.uint16)
    p = Path(path)
    with atomic_path(p) as tmp:
        img = Image.fromarray(arr)  # mode I;16
        if p.suffix.lower() == ".png":
            img.save(tmp, format="PNG", compress_level=1)
        elif p.suffix.lower() in (".tif", ".tiff"):
            img.save(tmp, format="TIFF", compression="tiff_adobe_deflate")
        else:
            raise ValueError(f"unsupported image suffix {p.suffix!r}: use .png, .tif or .tiff")
    return p


def write_case(
    out_dir: str | os.PathLike,
    index: int,
    study: SyntheticRadiograph,
    formats: Sequence[str] = ("png", "json", "buu", "dicom"),
    image_format: str = "png",
) -> dict[str, str]:
    """Write one study; returns its datalist entry (paths relative to ``out_dir``)."""
    out = Path(out_dir)
    name = f"case_{index:04d}"
    entry: dict[str, str] = {}
    image_rel = f"images/{name}{_IMAGE_SUFFIX[image_format]}"
    if {"png", "tiff", "image"} & set(formats):
        write_image(out / image_rel, study.image)
        entry["image"] = image_rel
    if "json" in formats:
        label_rel = f"annotations/{name}.json"
        h, w = study.image.shape
        ann = LandmarkAnnotation(
            layout=study.layout,
            points=study.points,
            pixel_spacing=tuple(float(v) for v in study.pixel_spacing),
            spacing_source="synthetic",
            image=os.path.relpath(out / image_rel, (out / label_rel).parent).replace(os.sep, "/"),
            image_size=(w, h),
            facing=study.facing,
            meta=_jsonable(study.meta),
        )
        write_annotation_json(out / label_rel, ann)
        entry["label"] = label_rel
    if "buu" in formats:
        buu_rel = f"buu/{name}.csv"
        write_buu_csv(out / buu_rel, _image_side_order(study), study.layout)
        entry["buu"] = buu_rel
    if "dicom" in formats:
        from .dicom import write_dx

        dcm_rel = f"dicom/{name}.dcm"
        write_dx(
            out / dcm_rel,
            study.image,
            study.pixel_spacing,
            study.bits_stored,
            case_name=f"CASE{index:04d}",
            facing=study.facing,
            photometric="MONOCHROME2" if index % 2 == 0 else "MONOCHROME1",
            spacing_attribute="PixelSpacing" if (index // 2) % 2 == 0 else "ImagerPixelSpacing",
            entropy=f"lumbar-monai-synthetic-{study.meta.get('seed')}",
        )
        entry["dicom"] = dcm_rel
    return entry


def _image_side_order(study: SyntheticRadiograph) -> np.ndarray:
    """BUU-LSPINE files are image-side (left/right) without a facing flag: store the points as seen on the image.

    For a patient facing right the anterior corners lie on the image right, so the anatomical points are
    re-ordered into the facing-left (image-side) order the CSV layout assumes.
    """
    if study.facing == "left":
        return study.points
    from ..anatomy import image_side_aliases

    lay = study.layout
    out = study.points.copy()
    for v, sl in zip(lay.vertebrae, lay.vertebra_slices, strict=True):
        left_names = image_side_aliases(lay, v, "left")  # alias -> anatomical (facing left)
        right_names = image_side_aliases(lay, v, "right")  # alias -> anatomical (facing right)
        for alias, anat_left in left_names.items():
            out[sl.start + v.corners.index(anat_left)] = study.points[sl.start + v.corners.index(right_names[alias])]
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _make_case(args) -> tuple[int, dict[str, str]]:
    out_dir, index, seed, config, formats, image_format = args
    study = generate_radiograph(case_seed(seed, index), config)
    return index, write_case(out_dir, index, study, formats, image_format)


def write_study_set(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    formats: Sequence[str] = ("png", "json", "buu", "dicom"),
    image_format: str = "png",
    splits: Sequence[float] = (0.7, 0.15, 0.15),
    progress: bool = True,
    num_workers: int = 1,
) -> Path:
    """Generate ``n`` studies into ``out_dir`` and write ``datalist.json``; returns the datalist path.

    Case ``i`` uses seed :func:`case_seed` ``(seed, i)``, so a set is identical whatever ``num_workers`` is.
    ``splits`` are the training / validation / test fractions; cases are shuffled into them with ``seed``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if image_format not in _IMAGE_SUFFIX:
        raise ValueError(f"image_format must be one of {sorted(_IMAGE_SUFFIX)}, got {image_format!r}")
    unknown = set(formats) - {"png", "tiff", "image", "json", "buu", "dicom"}
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; known: png/tiff/image, json, buu, dicom")
    if len(splits) != 3 or min(splits) < 0 or sum(splits) <= 0:
        raise ValueError(f"splits must be three non-negative fractions, got {tuple(splits)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SyntheticConfig()
    jobs = [(str(out), i, seed, cfg, tuple(formats), image_format) for i in range(n)]
    entries: dict[int, dict[str, str]] = {}
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="synthetic studies", unit="study", disable=not progress)
    if num_workers > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            for i, entry in pool.map(_make_case, jobs):
                entries[i] = entry
                bar.update(1)
    else:
        for job in jobs:
            i, entry = _make_case(job)
            entries[i] = entry
            bar.update(1)
    bar.close()
    # split
    frac = np.asarray(splits, dtype=np.float64) / float(np.sum(splits))
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 1 << 20])).permutation(n)
    n_val = int(round(frac[1] * n))
    n_test = int(round(frac[2] * n))
    n_train = n - n_val - n_test
    groups = {
        "training": sorted(order[:n_train].tolist()),
        "validation": sorted(order[n_train : n_train + n_val].tolist()),
        "test": sorted(order[n_train + n_val :].tolist()),
    }
    datalist = {
        "name": "lumbar-monai synthetic lateral lumbar radiographs",
        "description": f"{n} synthetic studies, seed {seed}",
        "layout": "lateral",
        "reference": "lumbar_monai.synthetic.write_study_set",
        "numTraining": len(groups["training"]),
        **{k: [entries[i] for i in idx] for k, idx in groups.items()},
    }
    return atomic_write_json(out / "datalist.json", datalist)

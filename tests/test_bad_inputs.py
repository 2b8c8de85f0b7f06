"""Bad-input corpus: every malformed file gives one :class:`InputError` whose one-line message names the file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless
from test_io_dicom import BASIC_TEXT_SR, SECONDARY_CAPTURE, make_dicom  # tests/ is on sys.path (no __init__.py)

from lumbar_monai.errors import InputError
from lumbar_monai.io.loader import load_radiograph

pytestmark = pytest.mark.compat


def _grey(h=16, w=12) -> np.ndarray:
    return (np.arange(h * w, dtype=np.uint16).reshape(h, w) * 7) % 1024


def build_corpus(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a word the message must contain)."""
    c: dict[str, tuple[Path, str]] = {}
    (d / "empty.dcm").write_bytes(b"")
    c["empty"] = (d / "empty.dcm", "empty")
    rng = np.random.default_rng(0)
    (d / "random.dcm").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    c["random bytes"] = (d / "random.dcm", "not a recognised image")
    full = make_dicom(d / "full.dcm", _grey(64, 64), bits_stored=10).read_bytes()
    (d / "truncated.dcm").write_bytes(full[: len(full) - 3000])
    c["truncated pixel data"] = (d / "truncated.dcm", "truncated")
    c["no pixel data"] = (make_dicom(d / "nopix.dcm", None, modality="DX"), "no pixel data")
    c["SR document"] = (
        make_dicom(d / "sr.dcm", None, sop_class=BASIC_TEXT_SR, modality="SR", ValueType="CONTAINER"),
        "Structured Report",
    )
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 200  # red
    c["RGB secondary capture"] = (
        make_dicom(d / "rgb.dcm", colour, "RGB", sop_class=SECONDARY_CAPTURE, modality="OT"),
        "colour",
    )
    c["multi-frame"] = (make_dicom(d / "multi.dcm", np.stack([_grey()] * 3), NumberOfFrames=3), "multi-frame")
    # a compressed transfer syntax declared over garbage fragments: no decoder can read it
    bad_j2k = make_dicom(d / "badj2k_src.dcm", _grey(), transfer_syntax=JPEG2000Lossless).read_bytes()
    (d / "badj2k.dcm").write_bytes(bad_j2k)
    c["undecodable compressed"] = (d / "badj2k.dcm", "pixel data")
    (d / "text.png").write_text("this is not an image\n" * 20)
    c["text named .png"] = (d / "text.png", "not a recognised image")
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png, format="PNG")
    (d / "cut.png").write_bytes(png.getvalue()[:40])
    c["truncated PNG"] = (d / "cut.png", "PNG")
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[:5, :, 2] = 255
    Image.fromarray(rgb).save(d / "colour.png")
    c["colour PNG"] = (d / "colour.png", "colour")
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 128)]
    frames[0].save(d / "pages.tif", save_all=True, append_images=frames[1:])
    c["multi-page TIFF"] = (d / "pages.tif", "multi-frame")
    c["missing file"] = (d / "does_not_exist.dcm", "not found")
    (d / "folder.png").mkdir()
    c["directory"] = (d / "folder.png", "directory")
    (d / "json.png").write_text(json.dumps({"not": "an image"}))
    c["JSON named .png"] = (d / "json.png", "not a recognised image")
    return c


CASES = [
    "empty",
    "random bytes",
    "truncated pixel data",
    "no pixel data",
    "SR document",
    "RGB secondary capture",
    "multi-frame",
    "undecodable compressed",
    "text named .png",
    "truncated PNG",
    "colour PNG",
    "multi-page TIFF",
    "missing file",
    "directory",
    "JSON named .png",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return build_corpus(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("voi", [False, True])
def test_bad_input_gives_one_line_input_error(corpus, case, voi):
    path, word = corpus[case]
    with pytest.raises(InputError) as info:
        load_radiograph(path, voi=voi)
    msg = str(info.value)
    assert msg.startswith(str(path) + ": "), msg
    assert "\n" not in msg and word.lower() in msg.lower(), msg
    assert info.value.path == str(path)


def test_corpus_is_complete(corpus):
    assert sorted(corpus) == sorted(CASES)


def test_jpeg_named_png_reads(tmp_path):
    """The content decides the reader: a JPEG with a .png name is read as JPEG."""
    arr = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))
    Image.fromarray(arr).save(tmp_path / "really_a_jpeg.png", format="JPEG", quality=100)
    r = load_radiograph(tmp_path / "really_a_jpeg.png")
    assert r.meta["format"] == "jpeg" and r.image.shape == (8, 16)
    assert np.abs(r.image - arr).max() <= 3  # JPEG at quality 100 is near-lossless


@pytest.mark.parametrize("legacy", [False, True])
def test_fuzzed_dicom_never_raises_anything_but_input_error(tmp_path, legacy):
    """Truncations at every 23 bytes of the header and random byte flips: read or InputError, nothing else."""
    data = make_dicom(
        tmp_path / "src.dcm",
        _grey(32, 32),
        bits_stored=10,
        file_meta=not legacy,
        PixelSpacing=[0.2, 0.2],
        WindowCenter=512,
        WindowWidth=1024,
    ).read_bytes()
    rng = np.random.default_rng(7)
    variants = [data[:cut] for cut in range(1, min(len(data), 900), 23)]
    for _ in range(40):
        a = np.frombuffer(data, np.uint8).copy()
        a[rng.integers(0, min(len(a), 700), 6)] = rng.integers(0, 256, 6)
        variants.append(a.tobytes())
    outcomes = {"ok": 0, "error": 0}
    for i, blob in enumerate(variants):
        path = tmp_path / f"v{i}.dcm"
        path.write_bytes(blob)
        for voi in (False, True):
            try:
                load_radiograph(path, voi=voi)
                outcomes["ok"] += 1
            except InputError as e:
                assert str(e).startswith(str(path) + ": ") and "\n" not in str(e)
                outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0

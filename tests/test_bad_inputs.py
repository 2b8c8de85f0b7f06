"""Bad-input corpus: every malformed file gives one :class:`InputError` whose one-line message names the file."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit
from test_io_dicom import BASIC_TEXT_SR, SECONDARY_CAPTURE, make_dicom  # tests/ is on sys.path (no __init__.py)

from lumbar_monai.errors import InputError
from lumbar_monai.io.loader import load_radiograph

pytestmark = pytest.mark.compat


def _grey(h=16, w=12) -> np.ndarray:
    return (np.arange(h * w, dtype=np.uint16).reshape(h, w) * 7) % 1024


def big_png(path: Path, w: int, h: int) -> Path:
    """A valid all-black 1-bit PNG of ``w`` x ``h`` pixels, written row block by row block (13000 x 13000: 21 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (w + 7) // 8)  # filter byte + packed bits
    blocks = [comp.compress(row * 1000) for _ in range(h // 1000)] + [comp.compress(row * (h % 1000)), comp.flush()]
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(blocks)) + chunk(b"IEND", b""))
    return path


def lying_nrrd(path: Path, w: int = 60000, h: int = 60000) -> Path:
    """An NRRD header of under 100 bytes claiming ``w`` x ``h`` 16-bit pixels, followed by 100 bytes of data."""
    header = f"NRRD0004\ntype: uint16\ndimension: 2\nsizes: {w} {h}\nendian: little\nencoding: raw\n\n"
    path.write_bytes(header.encode() + b"\0" * 100)
    return path


def with_codestream(path: Path, codestream: bytes, transfer_syntax: str, **attrs) -> Path:
    """Replace the pixel data of the DICOM file ``path`` by one encapsulated ``codestream`` (and set ``attrs``)."""
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path)
    return path


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
    # over the size limit or lying about the size: refused from the header, before anything is decoded
    c["PNG of 13000 x 13000"] = (big_png(d / "big.png", 13000, 13000), "over the limit of 100 megapixels")
    c["NRRD header claiming 60000 x 60000"] = (lying_nrrd(d / "lying.nrrd"), "3600.0 megapixels")
    c["DICOM header claiming 60000 x 60000"] = (
        make_dicom(d / "huge.dcm", _grey(16, 12), Rows=60000, Columns=60000),
        "over the limit",
    )
    jpeg = io.BytesIO()
    Image.fromarray(_grey(16, 12).astype(np.uint8)).save(jpeg, format="JPEG", quality=95)
    c["JPEG DICOM with Rows overstated"] = (
        with_codestream(make_dicom(d / "jpeg_rows.dcm", _grey(16, 12).astype(np.uint8)), jpeg.getvalue(),
                        JPEGBaseline8Bit, Rows=9000),
        "9000 x 12 in the header, 16 x 12 in the compressed pixel data",
    )
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
    "PNG of 13000 x 13000",
    "NRRD header claiming 60000 x 60000",
    "DICOM header claiming 60000 x 60000",
    "JPEG DICOM with Rows overstated",
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
    assert str(path) not in info.value.problem  # what logs show: a file name may identify a patient


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

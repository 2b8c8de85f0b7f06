"""Readers check the declared size before decoding, stay within a memory bound, read a padded JPEG 2000 DX and keep
decoder chatter off the console (issue 14, items 2 and 3)."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _paths import SHARED
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid
from test_bad_inputs import big_png, build_corpus, lying_nrrd, with_codestream
from test_io_dicom import make_dicom

from lumbar_monai.errors import InputError
from lumbar_monai.io.codestream import codestream_size, trim_j2k
from lumbar_monai.io.dicom import _single_frame, decode_pixels
from lumbar_monai.io.images import read_itk
from lumbar_monai.io.limits import DEFAULT_MAX_PIXELS, max_file_bytes, max_pixels
from lumbar_monai.io.loader import load_radiograph

openjpeg = pytest.importorskip("openjpeg")

#: 13 bytes of padding: a COM marker segment (FF64, Lcom 11, Rcom 1 = Latin text, 7 spaces), as the real DX has
COM_PADDING = b"\xff\x64\x00\x0b\x00\x01" + b" " * 7


def _ramp12(h: int = 64, w: int = 48) -> np.ndarray:
    return ((np.arange(h * w, dtype=np.uint32).reshape(h, w) * 37) % 4096).astype(np.uint16)


def _j2k(arr: np.ndarray) -> bytes:
    return bytes(openjpeg.encode(arr, bits_stored=12, photometric_interpretation=2, use_mct=False, codec_format=0))


def padded_j2k_dicom(path: Path, arr: np.ndarray) -> Path:
    """A 12-bit JPEG 2000 lossless DX whose codestream has :data:`COM_PADDING` before its end-of-codestream marker
    (and no window, so that the batch's presentation state decodes the pixels again)."""
    cs = _j2k(arr)
    assert cs.endswith(b"\xff\xd9")
    make_dicom(path, arr, "MONOCHROME1", bits_stored=12, ImagerPixelSpacing=[0.1, 0.1],
               StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())  # no window: GSPS decodes it too
    return with_codestream(path, cs[:-2] + COM_PADDING + cs[-2:], JPEG2000Lossless)


def test_limits_default_environment_and_argument(tmp_path, monkeypatch):
    monkeypatch.delenv("LUMBAR_MAX_PIXELS", raising=False)
    assert max_pixels() == DEFAULT_MAX_PIXELS == 100_000_000
    monkeypatch.setenv("LUMBAR_MAX_PIXELS", "not a number")
    assert max_pixels() == DEFAULT_MAX_PIXELS
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(tmp_path / "a.png")
    assert load_radiograph(tmp_path / "a.png").image.shape == (40, 50)
    monkeypatch.setenv("LUMBAR_MAX_PIXELS", "1999")
    with pytest.raises(InputError, match=r"a\.png: PNG image declares 50 x 40 = 0\.0 megapixels, over the limit"):
        load_radiograph(tmp_path / "a.png")
    assert load_radiograph(tmp_path / "a.png", max_pixels=2000).image.shape == (40, 50)  # the argument wins
    monkeypatch.setenv("LUMBAR_MAX_FILE_MB", "1")
    assert max_file_bytes() == 2**20
    (tmp_path / "big.dcm").write_bytes(b"\0" * (2**20 + 1))
    with pytest.raises(InputError, match="over the limit of 1 MiB"):
        load_radiograph(tmp_path / "big.dcm")


def test_pil_refuses_above_the_limit_and_above_twice_it(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="100 x 100 = 0.0 megapixels"):  # checked by the reader
        load_radiograph(tmp_path / "a.png", max_pixels=9000)
    with pytest.raises(InputError, match="over twice the limit"):  # PIL's decompression-bomb check, same limit
        load_radiograph(tmp_path / "a.png", max_pixels=4000)


def test_itk_header_is_checked_before_reading(tmp_path):
    with pytest.raises(InputError, match="60000 x 60000 = 3600.0 megapixels"):
        read_itk(lying_nrrd(tmp_path / "a.nrrd"))
    with pytest.raises(InputError, match="7 x 5 = 0.0 megapixels"):
        read_itk(lying_nrrd(tmp_path / "b.nrrd", 7, 5), max_pixels=30)


def test_a_13000_pixel_square_png_is_refused_without_decoding(tmp_path):
    path = big_png(tmp_path / "big.png", 13000, 13000)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="13000 x 13000 = 169.0 megapixels"):
            load_radiograph(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_padded_j2k_dx_reads_quietly(tmp_path, capfd, caplog):
    """The codestream with a COM segment of padding before EOC: OpenJPEG alone fails ("Stream too short, expected
    SOT"); the reader decodes it cut to its tile-parts, and prints nothing."""
    arr = _ramp12()
    path = padded_j2k_dicom(tmp_path / "dx.dcm", arr)
    frame = _single_frame(pydicom.dcmread(path))
    with pytest.raises(RuntimeError):  # the plain decoder really fails on this codestream
        openjpeg.decode(frame)
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        r = load_radiograph(path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert not [rec for rec in caplog.records if rec.name.split(".")[0] in ("pydicom", "openjpeg", "pylibjpeg")]
    np.testing.assert_array_equal(r.image, 4095 - arr.astype(np.float32))  # MONOCHROME1 mirrored
    assert r.meta["decoder"] == "pydicom" and "tile-part" in r.meta["repaired"]
    ds = pydicom.dcmread(path)
    stored, decoder, repaired = decode_pixels(ds)  # what the presentation state uses; ds is left as read
    np.testing.assert_array_equal(stored, arr)
    assert ds.PixelData == pydicom.dcmread(path).PixelData and repaired == r.meta["repaired"]


def test_undecodable_j2k_fails_in_one_line_and_prints_nothing(tmp_path, capfd):
    arr = _ramp12()
    cs = _j2k(arr)
    path = with_codestream(make_dicom(tmp_path / "bad.dcm", arr, bits_stored=12), cs[: len(cs) // 2],
                           JPEG2000Lossless)
    capfd.readouterr()
    with pytest.raises(InputError, match="cannot decode JPEG 2000") as info:
        load_radiograph(path)
    assert "\n" not in str(info.value)
    assert capfd.readouterr() == ("", "")


def test_jpeg_ls_rows_overstated_is_refused_before_decoding(tmp_path):
    from pydicom.pixels import get_encoder

    if not get_encoder(JPEGLSLossless).is_available:
        pytest.skip("no JPEG-LS encoder (pyjpegls) installed")
    path = make_dicom(tmp_path / "ls.dcm", _ramp12(), bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.compress(JPEGLSLossless)
    ds.Rows = 9000
    ds.save_as(path)
    with pytest.raises(InputError, match="9000 x 48 in the header, 64 x 48 in the compressed pixel data"):
        load_radiograph(path)


def test_codestream_size_and_trim():
    arr = _ramp12()
    cs = _j2k(arr)
    assert codestream_size(cs) == (64, 48, 1) and trim_j2k(cs) is None
    assert trim_j2k(cs[:-2] + COM_PADDING + cs[-2:]) == cs
    assert trim_j2k(cs + b"\0\0") == cs  # bytes after EOC
    psot_at = cs.index(b"\xff\x90") + 6
    open_ended = cs[:psot_at] + b"\0\0\0\0" + cs[psot_at + 4 :]  # Psot 0: the tile-part runs to EOC
    assert trim_j2k(open_ended) is None
    assert trim_j2k(open_ended[:-2] + COM_PADDING + COM_PADDING + b"\xff\xd9") == open_ended
    jp2 = bytes(openjpeg.encode(arr, bits_stored=12, photometric_interpretation=2, use_mct=False, codec_format=1))
    assert codestream_size(jp2) == (64, 48, 1)
    sof55 = b"\xff\xd8\xff\xf7" + struct.pack(">HBHHB", 11, 12, 123, 456, 1) + b"\x01\x11\x00"
    assert codestream_size(sof55) == (123, 456, 1)
    assert codestream_size(b"\xff\xd8\xff\xda\x00\x08") is None and codestream_size(b"garbage") is None


def _peak_bytes(path: Path, **kw) -> tuple[int, np.ndarray]:
    load_radiograph(path, **kw)  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        image = load_radiograph(path, **kw).image
        return tracemalloc.get_traced_memory()[1], image
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["dicom", "dicom voi", "rgb png"])
def test_read_path_memory_is_a_small_multiple_of_the_output(tmp_path, kind):
    """No full-size float64 temporaries: peak traced memory < 3x the float32 output (it was 5-8x before)."""
    arr = (np.arange(2048 * 2048, dtype=np.uint32).reshape(2048, 2048) % 4096).astype(np.uint16)
    if kind.startswith("dicom"):
        path = make_dicom(tmp_path / "m.dcm", arr, "MONOCHROME1", bits_stored=12, RescaleSlope=0.5,
                          RescaleIntercept=-10, WindowCenter=1000, WindowWidth=2000)
    else:
        path = tmp_path / "m.png"
        Image.fromarray(np.repeat((arr >> 4).astype(np.uint8)[..., None], 3, axis=2)).save(path)
    peak, image = _peak_bytes(path, voi=kind.endswith("voi"))
    assert image.shape == arr.shape and image.dtype == np.float32
    assert peak < 3 * image.nbytes, f"{peak / 2**20:.1f} MiB for a {image.nbytes / 2**20:.0f} MiB image"


_PEAK_RSS = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:])
print(f"PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(proc.returncode)
"""


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "dicom").is_dir(), reason="real DICOM files not found")
def test_batch_predict_over_hostile_and_real_inputs(tmp_path):
    """``lumbar-monai predict`` over the bad-input corpus (13000 x 13000 PNG, lying NRRD and DICOM headers
    included), a padded JPEG 2000 DX and every real DICOM: no traceback, no decoder line, no patient name, every
    real DICOM read, peak memory (RSS of the command) under 4 GB."""
    pytest.importorskip("highdicom")
    import _lm_helpers as H

    model = H.tiny_untrained_model(tmp_path / "model.pt")
    (tmp_path / "bad").mkdir()
    corpus = build_corpus(tmp_path / "bad")
    bad = sorted({str(p) for p, _ in corpus.values() if p.exists() and p.is_file()})
    padded = padded_j2k_dicom(tmp_path / "padded_dx.dcm", _ramp12(400, 300))
    real = sorted(str(p) for p in (SHARED / "dicom").glob("*.dcm"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "lumbar_monai", "predict", "--no-progress",
           *bad, str(padded), *real, "--out", str(out), "--model", str(model)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "Traceback" not in console and "expected SOT" not in console and "Failed to decode" not in console
    for secret in ("Do^Not^Log", "SECRET-ID-123", *bad, str(padded), *real):  # patient data, file names
        assert secret not in console
    failures = (out / "failures.txt").read_text()
    failed = [line.split(": ", 1)[0] for line in failures.splitlines()]
    assert str(padded) not in failed and not set(real) & set(failed), failures
    assert len(list(out.glob("*_sr.dcm"))) == len(real) + 1
    peak_kb = int(console.rsplit("PEAK_RSS_KB ", 1)[1].split()[0])
    assert peak_kb < 4 * 2**20, f"peak RSS {peak_kb / 2**20:.2f} GiB"

"""Shared by ``tests/test_monailabel_*.py``: a real MONAI Label server (``.venv-monailabel``) for the app in
``apps/lumbar_monailabel``, driven over HTTP on 127.0.0.1 (urllib), and the physical-space checks of its label
image and 3D Slicer markups against the radiograph as SimpleITK (like Slicer) reads it."""

from __future__ import annotations

import email.parser
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-monailabel"
APP = REPO / "apps" / "lumbar_monailabel"
BUNDLE = REPO / "bundles" / "lumbar_landmarks"
MODEL = "lumbar_landmarks"
START_TIMEOUT = 120.0
#: the lead's tiny schedule (a few seconds per stage on CPU)
TINY = ["--posenet#max_epochs", "2", "--posenet#input_size", "128", "--posenet#heatmap_size", "16",
        "--mnet_lumbar#max_epochs", "1", "--mnet_sacrum#max_epochs", "1",
        "--mnet_lumbar#config#crop_size", "64", "--mnet_sacrum#config#crop_size", "64"]

#: skip marker of the tests that need the MONAI Label environment
needs_monailabel = pytest.mark.skipif(
    not (VENV / "bin" / "monailabel").is_file(),
    reason=f"MONAI Label environment missing: run `bash scripts/setup-monailabel.sh` ({VENV})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``monailabel start_server`` in its own process group; :meth:`stop` ends the group."""

    def __init__(self, app: Path, studies: Path, log: Path, conf: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update({
            "PATH": f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "MONAILABEL_PYEXE": str(VENV / "bin" / "python"),  # the launcher script runs `python -m monailabel.main`
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
            "MONAI_LABEL_SESSIONS": "false",
            "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
        })
        cmd = [str(VENV / "bin" / "monailabel"), "start_server", "--app", str(app), "--studies", str(studies),
               "--host", "127.0.0.1", "--port", str(self.port)]
        for k, v in conf.items():
            cmd += ["--conf", k, v]
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, cwd=str(app.parent))

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base + "/info/", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def request(self, method: str, path: str, data: bytes | None = None, headers: dict | None = None,
                timeout: float = 120.0) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, **kw):
        status, _, body = self.request(method, path, **kw)
        assert status == 200, f"{method} {path}: HTTP {status}: {body[:2000]!r}\n{self.log_tail()}"
        return json.loads(body)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        else:  # the launcher is gone: make sure nothing of its group is left
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.proc.returncode


def multipart(fields: dict[str, tuple[str | None, bytes, str]]) -> tuple[bytes, str]:
    """``multipart/form-data`` body: ``{name: (filename or None, content, content type)}``."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, (filename, content, ctype) in fields.items():
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disp}\r\nContent-Type: {ctype}\r\n\r\n".encode())
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart(), content_type
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in msg.get_payload()}


def train_tiny(out: Path) -> Path:
    """Train the demonstration model with the bundle's own synthetic data and the tiny schedule (~15 s)."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training",
           "--config_file", str(BUNDLE / "configs" / "train.json"), "--bundle_root", str(BUNDLE),
           "--output_dir", str(out), "--synthetic#n", "10", "--synthetic#max_side", "384", *TINY]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    model = out / "models" / "lumbar_landmarks.pt"
    assert model.is_file()
    return model


def label_hits(label_path: Path, image_path: Path, points) -> tuple[float, int]:
    """Resample the label image onto the radiograph as SimpleITK reads it (physical space, nearest neighbour):
    ``(fraction of the label's voxels that land inside the image on the pixels the landmarks' discs cover, number
    of label voxels)``."""
    import SimpleITK as sitk

    from lumbar_monai.io.nifti import landmark_label_map
    from lumbar_monai.monailabel_support import disc_radius

    image = sitk.ReadImage(str(image_path))
    label = sitk.ReadImage(str(label_path))
    assert label.GetDimension() == image.GetDimension()
    moved = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    got = sitk.GetArrayFromImage(moved).reshape(image.GetHeight(), image.GetWidth())
    want = landmark_label_map(points, (image.GetHeight(), image.GetWidth()),
                              radius=disc_radius((image.GetWidth(), image.GetHeight())))
    n = int((sitk.GetArrayFromImage(label) > 0).sum())
    assert n == int((want > 0).sum()) > 0
    return float(((got == want) & (want > 0)).sum()) / n, n


def check_markups(doc: dict, image_path: Path, points, atol: float = 1e-6) -> None:
    """``doc`` is a Slicer markups point list (schema v1.0.3, LPS) whose positions map back, through the
    radiograph's SimpleITK geometry, to ``points`` (pixels)."""
    import numpy as np
    import SimpleITK as sitk

    from lumbar_monai.anatomy import LATERAL
    from lumbar_monai.monailabel_support import SLICER_MARKUPS_SCHEMA

    assert doc["@schema"] == SLICER_MARKUPS_SCHEMA
    (m,) = doc["markups"]
    assert m["type"] == "Fiducial" and m["coordinateSystem"] == "LPS" and m["coordinateUnits"] == "mm"
    cps = m["controlPoints"]
    assert [cp["label"] for cp in cps] == list(LATERAL.point_names)
    assert all(cp["positionStatus"] == "defined" and len(cp["position"]) == 3 for cp in cps)
    image = sitk.ReadImage(str(image_path))
    d = image.GetDimension()
    back = np.array([image.TransformPhysicalPointToContinuousIndex(cp["position"][:d])[:2] for cp in cps])
    np.testing.assert_allclose(back, points, atol=atol)
    if d == 2:
        assert all(cp["position"][2] == 0.0 for cp in cps)


def write_oblique_dx(path: Path, image, spacing_xy: tuple[float, float] = (0.2, 0.3)) -> Path:
    """A DX file (``image``: ``(H, W)`` uint16) whose pixels lie in space away from the origin, along
    oblique axes, columns ``spacing_xy[0]`` and rows ``spacing_xy[1]`` mm apart: the project's DX writer, then an
    image plane (position ``(-12.5, 40, 7.25)``, axes turned by 0.3 rad about L)."""
    import numpy as np
    import pydicom

    from lumbar_monai.synthetic.dicom import write_dx

    bits = max(12, int(np.asarray(image).max()).bit_length())
    write_dx(path, image, spacing_xy, bits_stored=bits, case_name="GEOM0001")
    ds = pydicom.dcmread(path)
    c, s = np.cos(0.3), np.sin(0.3)
    ds.ImageOrientationPatient = [0.0, c, s, 0.0, -s, c]  # rows along (0, c, s), columns along (0, -s, c)
    ds.ImagePositionPatient = [-12.5, 40.0, 7.25]
    ds.save_as(path)
    return path

"""End to end: a real MONAI Label server (``.venv-monailabel``) with the app in ``apps/lumbar_monailabel``.

The test runs in the main environment and talks to the server over HTTP on 127.0.0.1 only (urllib). It trains a
tiny model with the bundle first (the model the app must work with), then: ``/info/`` before any model, infer
answering "no model is available", the model appearing in the app's model folder, ``/infer/<model>`` checked
against :meth:`LandmarkPredictor.predict` on the same file (1e-3 px), a corrected label saved with
``PUT /datastore/label``, a fine-tuning run through ``POST /train/<model>`` and infer with the new model, and the
server stopped (its whole process group, also when the test fails).
"""

from __future__ import annotations

import email.parser
import gzip
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
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

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (VENV / "bin" / "monailabel").is_file(),
                       reason=f"MONAI Label environment missing: run `bash scripts/setup-monailabel.sh` ({VENV})"),
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``monailabel start_server`` in its own process group; :meth:`stop` ends the group."""

    def __init__(self, app: Path, studies: Path, log: Path, conf: dict[str, str]) -> None:
        self.port = _free_port()
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


def _multipart(fields: dict[str, tuple[str | None, bytes, str]]) -> tuple[bytes, str]:
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


def _parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    msg = email.parser.BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart(), content_type
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in msg.get_payload()}


def _train_tiny(out: Path) -> Path:
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


def _landmarks_xy(doc: dict) -> np.ndarray:
    return np.array([[lm["x"], lm["y"]] for lm in doc["result"]["landmarks"]], dtype=np.float64)


def test_monailabel_server_end_to_end(tmp_path):
    import nibabel as nib

    from lumbar_monai.anatomy import LATERAL
    from lumbar_monai.io.annotations import read_annotation_json
    from lumbar_monai.monailabel_support import centroids, disc_radius
    from lumbar_monai.predictor import LandmarkPredictor

    t_start = time.monotonic()
    model = _train_tiny(tmp_path / "bundle_run")  # also writes the synthetic studies used below
    synth = tmp_path / "bundle_run" / "synthetic"
    studies = tmp_path / "studies"
    studies.mkdir()
    cases = sorted(p.stem for p in (synth / "images").glob("*.png"))[:3]
    for c in cases:
        shutil.copy2(synth / "images" / f"{c}.png", studies / f"{c}.png")
    # a copy of the app: monailabel writes logs/, model/ and bin/ into the app folder
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__"))
    server = Server(app, studies, tmp_path / "server.log", {"models": MODEL, "bundle_dir": str(BUNDLE)})
    try:
        server.wait_ready()

        # before any model: /info/ works and lists the model; infer says clearly that there is none
        info = server.json("GET", "/info/")
        assert info["models"][MODEL]["model_available"] is False
        assert info["models"][MODEL]["dimension"] == 2
        assert info["labels"][: LATERAL.num_points] == list(LATERAL.point_names)
        assert MODEL in info["trainers"] and info["datastore"]["total"] == len(cases)
        image_id = cases[0]
        status, _, body = server.request("POST", f"/infer/{MODEL}?image={image_id}&output=json", data=b"")
        assert status == 503 and "no model is available: train one" in json.loads(body)["detail"], body

        # the bundle's checkpoint at the app's default model path is picked up without a restart
        (app / "model").mkdir(exist_ok=True)
        shutil.copy2(model, app / "model" / "lumbar_landmarks.pt")
        status, headers, body = server.request("POST", f"/infer/{MODEL}?image={image_id}", data=b"")
        assert status == 200, body[:2000]
        parts = _parse_multipart(body, headers["content-type"])
        doc = json.loads(parts["params"])
        direct = LandmarkPredictor.load(model, device="cpu").predict(studies / f"{image_id}.png")
        np.testing.assert_allclose(_landmarks_xy(doc), direct.points, atol=1e-3, rtol=0)
        np.testing.assert_allclose([lm["confidence"] for lm in doc["result"]["landmarks"]], direct.confidence,
                                   atol=1e-4)
        assert [lm["name"] for lm in doc["result"]["landmarks"]] == list(LATERAL.point_names)
        assert doc["result"]["qc_flags"] == direct.qc_flags
        assert doc["centroids"] == centroids(direct.centres, LATERAL, direct.image_size)
        keys = {m["key"] for m in doc["measurements"]["items"]}
        assert "lumbar_lordosis" in keys and "sacral_slope" in keys
        # the label image: (W, H), one disc of radius disc_radius() per landmark (label i + 1); where two discs
        # overlap a pixel goes to the nearer landmark
        label = nib.Nifti1Image.from_bytes(gzip.decompress(parts["image"]))
        data = np.asarray(label.dataobj)
        assert data.shape == tuple(direct.image_size)
        r = disc_radius(direct.image_size)
        present = [int(v) for v in np.unique(data) if v > 0]
        assert present and max(present) <= LATERAL.num_points
        for v in present:
            xs, ys = np.nonzero(data == v)
            assert np.hypot(xs - direct.points[v - 1, 0], ys - direct.points[v - 1, 1]).max() <= r + 1e-6
        for i, (x, y) in enumerate(direct.points):
            px, py = int(round(x)), int(round(y))
            if 0 <= px < data.shape[0] and 0 <= py < data.shape[1]:
                d = np.hypot(direct.points[:, 0] - px, direct.points[:, 1] - py)
                if np.argmin(d) == i and np.sort(d)[1] > d[i] + 1e-6:
                    assert data[px, py] == i + 1, LATERAL.point_names[i]

        # training before any correction says so (and leaves no run folder)
        status, _, body = server.request("POST", f"/train/{MODEL}?run_sync=true", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        assert status == 422 and "no labelled images in the datastore" in json.loads(body)["detail"], body
        assert not list((app / "model" / "train").glob("*"))

        # the annotator's corrected landmarks go back to the datastore (tag "final")
        truth = synth / "annotations" / f"{image_id}.json"
        body, ctype = _multipart({"label": (f"{image_id}.json", truth.read_bytes(), "application/json"),
                                  "params": (None, b"{}", "text/plain")})
        saved = server.json("PUT", f"/datastore/label?image={image_id}&tag=final", data=body,
                            headers={"Content-Type": ctype})
        assert saved["image"] == image_id
        stored = studies / "labels" / "final" / f"{image_id}.json"
        np.testing.assert_array_equal(read_annotation_json(stored).points, read_annotation_json(truth).points)
        assert server.json("GET", "/info/")["datastore"]["completed"] == 1

        # a landmark JSON placed by hand in the label folder counts too (MONAI Label itself does not list .json)
        shutil.copy2(synth / "annotations" / f"{cases[2]}.json", stored.parent / f"{cases[2]}.json")

        # fine-tune on both through MONAI Label; the new model replaces the app's and infer uses it
        before = (app / "model" / "lumbar_landmarks.pt").read_bytes()
        params = json.dumps({"posenet#max_epochs": 1, "mnet_lumbar#max_epochs": 1, "mnet_sacrum#max_epochs": 1})
        stats = server.json("POST", f"/train/{MODEL}?run_sync=true", data=params.encode(),
                            headers={"Content-Type": "application/json"}, timeout=300)
        assert stats["status"] == "DONE" and stats["images"] == 2 and stats["fine_tuned"] is True, stats
        assert "initialised posenet, lumbar, sacrum from" in (Path(stats["run_dir"]) / "train.log").read_text()
        new_model = app / "model" / "lumbar_landmarks.pt"
        assert new_model.read_bytes() != before
        assert (app / "model" / "lumbar_landmarks.previous.pt").read_bytes() == before
        doc2 = server.json("POST", f"/infer/{MODEL}?image={cases[1]}&output=json", data=b"")
        direct2 = LandmarkPredictor.load(new_model, device="cpu").predict(studies / f"{cases[1]}.png")
        np.testing.assert_allclose(_landmarks_xy(doc2), direct2.points, atol=1e-3, rtol=0)
        assert server.json("GET", "/info/")["train_stats"][MODEL]["status"] == "DONE"
    finally:
        code = server.stop()
    assert code is not None  # stopped
    assert time.monotonic() - t_start < 300

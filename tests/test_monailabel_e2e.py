"""End to end: a real MONAI Label server (``.venv-monailabel``) with the app in ``apps/lumbar_monailabel``.

The test runs in the main environment and talks to the server over HTTP on 127.0.0.1 only (urllib). It trains a
tiny model with the bundle first (the model the app must work with), then: ``/info/`` before any model, infer
answering "no model is available", the model appearing in the app's model folder, ``/infer/<model>`` checked
against :meth:`LandmarkPredictor.predict` on the same file (1e-3 px), a corrected label saved with
``PUT /datastore/label``, a fine-tuning run through ``POST /train/<model>`` and infer with the new model, and the
server stopped (its whole process group, also when the test fails).
"""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from _monailabel_helpers import (
    APP,
    BUNDLE,
    MODEL,
    Server,
    check_markups,
    label_hits,
    multipart,
    needs_monailabel,
    parse_multipart,
    train_tiny,
    write_oblique_dx,
)

pytestmark = [pytest.mark.slow, needs_monailabel]


def _landmarks_xy(doc: dict) -> np.ndarray:
    return np.array([[lm["x"], lm["y"]] for lm in doc["result"]["landmarks"]], dtype=np.float64)


def test_monailabel_server_end_to_end(tmp_path):
    import nibabel as nib

    from lumbar_monai.anatomy import LATERAL
    from lumbar_monai.io.annotations import read_annotation_json
    from lumbar_monai.monailabel_support import centroids, disc_radius
    from lumbar_monai.predictor import LandmarkPredictor

    t_start = time.monotonic()
    model = train_tiny(tmp_path / "bundle_run")  # also writes the synthetic studies used below
    synth = tmp_path / "bundle_run" / "synthetic"
    studies = tmp_path / "studies"
    studies.mkdir()
    cases = sorted(p.stem for p in (synth / "images").glob("*.png"))[:3]
    for c in cases:
        shutil.copy2(synth / "images" / f"{c}.png", studies / f"{c}.png")
    # a DICOM radiograph whose pixels lie away from the origin along oblique axes (anisotropic spacing)
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph

    dx = write_oblique_dx(studies / "case_dx.dcm", generate_radiograph(7, SyntheticConfig(max_side=384)).image)
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
        assert MODEL in info["trainers"] and info["datastore"]["total"] == len(cases) + 1
        image_id = cases[0]
        status, _, body = server.request("POST", f"/infer/{MODEL}?image={image_id}&output=json", data=b"")
        assert status == 503 and "no model is available: train one" in json.loads(body)["detail"], body

        # the bundle's checkpoint at the app's default model path is picked up without a restart
        (app / "model").mkdir(exist_ok=True)
        shutil.copy2(model, app / "model" / "lumbar_landmarks.pt")
        status, headers, body = server.request("POST", f"/infer/{MODEL}?image={image_id}", data=b"")
        assert status == 200, body[:2000]
        parts = parse_multipart(body, headers["content-type"])
        doc = json.loads(parts["params"])
        direct = LandmarkPredictor.load(model, device="cpu").predict(studies / f"{image_id}.png")
        np.testing.assert_allclose(_landmarks_xy(doc), direct.points, atol=1e-3, rtol=0)
        np.testing.assert_allclose([lm["confidence"] for lm in doc["result"]["landmarks"]], direct.confidence,
                                   atol=1e-4)
        assert [lm["name"] for lm in doc["result"]["landmarks"]] == list(LATERAL.point_names)
        assert doc["result"]["qc_flags"] == direct.qc_flags
        assert doc["centroids"] == centroids(direct.centres, LATERAL, direct.image_size)
        # in Slicer's physical space the label image and the markups lie on the radiograph (PNG and DICOM)
        (tmp_path / "label.nii.gz").write_bytes(parts["image"])
        frac, _ = label_hits(tmp_path / "label.nii.gz", studies / f"{image_id}.png", direct.points)
        assert frac >= 0.95, frac
        check_markups(doc["slicer_markups"], studies / f"{image_id}.png", direct.points, atol=1e-3)
        status, headers, body = server.request("POST", f"/infer/{MODEL}?image=case_dx", data=b"")
        assert status == 200, body[:2000]
        dx_parts = parse_multipart(body, headers["content-type"])
        dx_direct = LandmarkPredictor.load(model, device="cpu").predict(dx)
        (tmp_path / "label_dx.nii.gz").write_bytes(dx_parts["image"])
        frac, _ = label_hits(tmp_path / "label_dx.nii.gz", dx, dx_direct.points)
        assert frac >= 0.95, frac
        check_markups(json.loads(dx_parts["params"])["slicer_markups"], dx, dx_direct.points, atol=1e-3)
        # an unknown image id: a clear 404 (not MONAI Label's ". is a directory")
        status, _, body = server.request("POST", f"/infer/{MODEL}?image=no_such_case&output=json", data=b"")
        assert status == 404 and "no image with this id" in json.loads(body)["detail"], body
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
        body, ctype = multipart({"label": (f"{image_id}.json", truth.read_bytes(), "application/json"),
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

"""A real MONAI Label server refuses hostile requests with a 4xx (issue 14 item 1; issue 17's unknown image id).

``POST /train/<model>`` used to copy every ``#`` key of its body into the bundle's ``overrides.json``, where MONAI
evaluates ``"$..."`` strings: with one final label in the datastore (which an unauthenticated
``PUT /datastore/label`` creates) a body ran code as the server user. Here the datastore has that label, and each
hostile body of the report is sent both ways MONAI Label runs training (a background task, and ``run_sync``):
every one is answered 422 naming the key, no training run starts (no run folder, no task), and the code it
carried leaves no trace. A valid typed body passes the same check. Infer on an unknown image id (or a server
path) is answered 404, not MONAI Label's ``". is a directory"``; an uploaded image is not; a bad infer device is
a 422.
"""

from __future__ import annotations

import json
import time

import pytest
from _monailabel_helpers import APP, BUNDLE, MODEL, Server, multipart, needs_monailabel

pytestmark = [pytest.mark.slow, needs_monailabel]


def _bodies(marker: str) -> list[tuple[dict, str]]:
    rce = f"$__import__('pathlib').Path({marker!r}).write_text('ran')"
    return [
        ({"initialize#0": rce}, "initialize#0"),
        ({"+initialize": [rce]}, "+initialize"),
        ({"imports#0": rce}, "imports#0"),
        ({"training#0": rce}, "training#0"),
        ({"posenet#max_epochs": rce}, "posenet#max_epochs"),
        ({"posenet#lr": "@train#posenet#network"}, "posenet#lr"),
        ({"device": f"cpu') or {rce[1:]} or ('"}, "device"),
        ({"output_dir": str(marker)}, "output_dir"),
        ({"bundle_path": "/tmp"}, "bundle_path"),
        ({"posenet#max_epochs": -3}, "posenet#max_epochs"),
    ]


def test_server_refuses_hostile_train_and_infer_requests(tmp_path):
    import shutil

    from PIL import Image

    from lumbar_monai.io.annotations import LandmarkAnnotation, write_annotation_json
    from lumbar_monai.synthetic import SyntheticConfig, generate_radiograph

    studies = tmp_path / "studies"
    studies.mkdir()
    study = generate_radiograph(0, SyntheticConfig(max_side=192))
    Image.fromarray((study.image >> 8).astype("uint8")).save(studies / "case_a.png")
    app = tmp_path / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__"))
    marker = tmp_path / "pwned"
    json_hdr = {"Content-Type": "application/json"}
    server = Server(app, studies, tmp_path / "server.log", {"models": MODEL, "bundle_dir": str(BUNDLE)})
    try:
        server.wait_ready()
        # a valid body passes the check: with no label yet the task itself answers (422, nothing labelled)
        ok = {"posenet#max_epochs": "1", "posenet#lr": 5e-5, "init_from_model": True, "device": "cpu"}
        status, _, body = server.request("POST", f"/train/{MODEL}?run_sync=true", data=json.dumps(ok).encode(),
                                         headers=json_hdr)
        assert status == 422 and "no labelled images in the datastore" in json.loads(body)["detail"], body

        # the attack's precondition: one final label, stored without any credentials
        ann = tmp_path / "case_a.json"
        h, w = study.image.shape
        write_annotation_json(ann, LandmarkAnnotation(layout=study.layout, points=study.points, image_size=(w, h),
                                                      pixel_spacing=study.pixel_spacing, facing=study.facing))
        data, ctype = multipart({"label": ("case_a.json", ann.read_bytes(), "application/json"),
                                 "params": (None, b"{}", "text/plain")})
        server.json("PUT", "/datastore/label?image=case_a&tag=final", data=data, headers={"Content-Type": ctype})

        for body_, key in _bodies(str(marker)):
            for query in ("", "?run_sync=true"):
                status, _, body = server.request("POST", f"/train/{MODEL}{query}", data=json.dumps(body_).encode(),
                                                 headers=json_hdr)
                assert status == 422, (key, query, status, body[:500])
                detail = json.loads(body)["detail"]
                assert detail.startswith("train request: ") and repr(key) in detail, detail
        # the deprecated "train every model" endpoint nests the body under the model's name
        status, _, body = server.request("POST", "/train/", data=json.dumps({MODEL: {"imports#0": "$x"}}).encode(),
                                         headers=json_hdr)
        assert status == 422 and "'imports#0'" in json.loads(body)["detail"], body
        time.sleep(1.0)
        assert not marker.exists()
        assert not (app / "model" / "train").exists() or not any((app / "model" / "train").iterdir())
        status, _, body = server.request("GET", "/train/?all=true")
        assert status == 404, body[:500]  # "No Train Tasks Found": nothing was started

        # infer: an unknown id, a server path, an empty id (checked before the no-model answer)
        for image in ("no_such_case", "%2Fetc%2Fpasswd", str(studies / "case_a.png").replace("/", "%2F")):
            status, _, body = server.request("POST", f"/infer/{MODEL}?image={image}&output=json", data=b"")
            assert status == 404, (image, status, body[:500])
            assert "no image with this id in the datastore" in json.loads(body)["detail"], body
        status, _, body = server.request("POST", f"/infer/{MODEL}?image=case_a&output=json", data=b"")
        assert status == 503 and "no model is available" in json.loads(body)["detail"], body
        # an image uploaded with the request is not refused either (it reaches the no-model answer)
        data, ctype = multipart({"file": ("upload.png", (studies / "case_a.png").read_bytes(), "image/png"),
                                 "params": (None, b"{}", "text/plain")})
        status, _, body = server.request("POST", f"/infer/{MODEL}?output=json", data=data,
                                         headers={"Content-Type": ctype})
        assert status == 503 and "no model is available" in json.loads(body)["detail"], body
        # infer settings are checked too: a device that is not cpu/cuda[:N] is a 422, not a 500
        data, ctype = multipart({"params": (None, json.dumps({"device": "cpu'); x"}).encode(), "text/plain")})
        status, _, body = server.request("POST", f"/infer/{MODEL}?image=case_a&output=json", data=data,
                                         headers={"Content-Type": ctype})
        assert status == 422 and json.loads(body)["detail"].startswith("infer request: 'device'"), body
    finally:
        server.stop()


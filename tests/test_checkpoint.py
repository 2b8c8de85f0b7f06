"""lumbar_monai.checkpoint: network entries round-trip through a weights-only file; bad files are one-line errors."""

from __future__ import annotations

import pytest
import torch

from lumbar_monai.anatomy import get_layout
from lumbar_monai.checkpoint import (
    build_network,
    half_entry,
    is_network_entry,
    network_entry,
    network_kwargs,
    read_checkpoint,
    read_network_file,
    save_checkpoint,
    with_init_kwargs,
)
from lumbar_monai.errors import InputError
from lumbar_monai.networks.mnet import MNet

pytestmark = pytest.mark.compat


def _tiny_mnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return with_init_kwargs(MNet, out_channels=4, channels=(4, 8, 8, 8))


def test_an_entry_rebuilds_the_same_network_from_a_weights_only_file(tmp_path):
    net = _tiny_mnet().eval()
    entry = network_entry(net, "MNet")
    assert entry["network"] == "MNet" and entry["kwargs"]["channels"] == [4, 8, 8, 8]  # a tuple stored as a list
    path = save_checkpoint({"lumbar": entry}, tmp_path / "m.pt")
    back = build_network(MNet, read_checkpoint(path)["lumbar"]).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        out, out_back = net(x), back(x)
    out, out_back = (o[0] if isinstance(o, (tuple, list)) else o for o in (out, out_back))
    assert torch.equal(out, out_back)
    assert back.init_kwargs == entry["kwargs"]  # saved again, the same entry


def test_a_layout_argument_is_stored_by_name():
    net = torch.nn.Identity()
    net.init_kwargs = {"layout": get_layout("ap"), "size": (3, 4)}
    assert network_kwargs(net) == {"layout": "ap", "size": [3, 4]}
    with pytest.raises(ValueError, match="with_init_kwargs"):
        network_kwargs(torch.nn.Identity())


def test_half_entry_stores_float_weights_as_float16_and_keeps_integer_buffers():
    net = _tiny_mnet()
    entry = network_entry(net)
    entry["state_dict"]["counter"] = torch.tensor([3], dtype=torch.int64)
    half = half_entry(entry)
    assert is_network_entry(half) and not is_network_entry({"kwargs": {}})
    floats = [k for k, v in entry["state_dict"].items() if v.is_floating_point()]
    assert floats and all(half["state_dict"][k].dtype == torch.float16 for k in floats)
    assert half["state_dict"]["counter"].dtype == torch.int64
    assert entry["state_dict"][floats[0]].dtype == torch.float32  # the original entry is left as it was


def test_bad_files_are_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="checkpoint file not found"):
        read_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a loadable checkpoint"):
        read_checkpoint(text)
    listed = save_checkpoint({"x": 1}, tmp_path / "dict.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(InputError, match="checkpoint is not a dict"):
        read_checkpoint(tmp_path / "list.pt")
    with pytest.raises(InputError, match="not a vertebra counter checkpoint") as err:
        read_network_file(listed, "vertebra counter")
    assert "\n" not in str(err.value)

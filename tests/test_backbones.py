from __future__ import annotations

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from inspector import backbones
from inspector.backbones import CATALOGUE, create_model, list_backbones, read_state_dict
from inspector.errors import InspectorError


@pytest.mark.parametrize("spec", CATALOGUE, ids=lambda s: s.name)
def test_catalogue_entry_is_a_timm_model_with_the_stated_size(spec):
    model = timm.create_model(spec.name, pretrained=False)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    assert params_m == pytest.approx(spec.params_m, rel=0.02)
    assert spec.summary


def test_lite0_weights_are_bundled_and_listed_as_offline():
    status = {s.spec.name: s for s in list_backbones()}["tf_efficientnet_lite0"]
    assert status.weights == "bundled" and status.available_offline
    assert status.input_size == 224


@pytest.mark.parametrize("name", sorted(backbones.BUNDLED_WEIGHTS))
def test_bundled_weights_are_mapped_by_position_onto_timm(name):
    assert backbones.weight_source(name) == "bundled"  # all three weight packages are dependencies
    model = create_model(name, num_classes=3)
    source = list(read_state_dict(backbones.bundled_weights_file(name)).values())
    own = model.state_dict()
    assert torch.equal(own["conv_stem.weight"], source[0])
    assert torch.equal(own["bn2.running_var"], source[-4])  # last BN before the 1000-class head
    assert own["classifier.weight"].shape == (3, 1280)  # the head is new, sized for our classes


def test_download_only_backbone_offline_fails_fast_and_names_offline_choices(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(backbones, "cached_weights_file", lambda name: None)
    start = time.monotonic()
    with pytest.raises(InspectorError, match="tf_efficientnet_lite0") as err:
        create_model("resnet18", num_classes=2)
    assert time.monotonic() - start < 10
    assert "internet" in str(err.value)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(InspectorError, match="Unknown backbone 'resnet_banana'"):
        create_model("resnet_banana", num_classes=2)


def test_local_safetensors_weights_are_loaded(tmp_path):
    donor = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    model = create_model("resnet18", num_classes=4, weights_path=path)
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], donor.state_dict()["layer4.1.conv2.weight"])
    assert model.get_classifier().out_features == 4


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}, str(path))
    with pytest.raises(InspectorError, match="do not fit"):
        create_model("tf_efficientnet_lite0", num_classes=2, weights_path=path)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/inspector-pwned-by-pickle",))


def test_pickled_weights_file_is_refused_not_executed(tmp_path):
    import os
    import pickle

    marker = "/tmp/inspector-pwned-by-pickle"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"weight": _Exploit()}))
    with pytest.raises(InspectorError):
        read_state_dict(path)
    assert not os.path.exists(marker)


def test_weights_in_the_local_hugging_face_cache_are_used_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    donor = timm.create_model("resnet18", pretrained=False)
    repo = tmp_path / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    assert backbones.weight_source("resnet18") == "cached"
    assert "resnet18" in backbones.offline_backbones()
    model = create_model("resnet18", num_classes=2)
    assert torch.equal(model.state_dict()["conv1.weight"], donor.state_dict()["conv1.weight"])

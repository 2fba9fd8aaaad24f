"""hf:LOCAL_DIR — a real Hugging Face image classifier saved to and loaded from a temporary folder."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

from robustreg import Registry, UserError
from robustreg.models import build_model
from robustreg_plugins import hf_models

transformers = pytest.importorskip("transformers")  # an optional extra: skipped only where it is not installed

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _registry() -> Registry:
    installed = {ep.name for ep in metadata.entry_points(group="robustreg")}
    extra = [] if "hf_models" in installed else [("hf_models", hf_models)]
    return Registry.create(plugins=extra)


@pytest.fixture
def saved_vit(tmp_path):
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=10)
    model = transformers.ViTForImageClassification(config).eval()
    model.save_pretrained(tmp_path / "vit")
    transformers.ViTImageProcessor(image_mean=MEAN, image_std=STD, size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "vit")
    return model, tmp_path / "vit"


def test_loads_the_saved_classifier_behind_its_normalisation(saved_vit):
    original, folder = saved_vit
    model = build_model(f"hf:{folder}", registry=_registry())
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = original(pixel_values=(x - mean) / std).logits
        got = model(x)
    assert got.shape == (3, 10)
    # the same weights and ops in one process: equal up to float32 rounding (1e-5 leaves a wide margin)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_no_preprocessor_config_means_no_normalisation(saved_vit):
    original, folder = saved_vit
    (folder / "preprocessor_config.json").unlink()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(hf_models.build(str(folder))(x), original(pixel_values=x).logits,
                                   rtol=1e-5, atol=1e-5)


def test_a_hub_id_or_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"hf:google/vit-base-patch16-224: no such folder; .*never downloads"):
        hf_models.build("google/vit-base-patch16-224")
    with pytest.raises(UserError, match=r"the folder has no config.json"):
        hf_models.build(str(tmp_path))

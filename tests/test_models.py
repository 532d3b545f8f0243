"""Model heads: the symmetric multiscale head sees a part the same whichever way it lies."""
from __future__ import annotations

import torch

from inspector.models import architecture_recipe, build_model, dihedral_views, model_from_recipe, single_view


def _model(symmetric: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("tf_efficientnet_lite0", 3, "multiscale", symmetric=symmetric).eval()


def test_dihedral_views_are_the_eight_distinct_flips_and_quarter_turns():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = list(dihedral_views(x))
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert any(torch.equal(v, torch.rot90(x, 1, (2, 3))) for v in views)


def test_symmetric_head_gives_the_same_output_for_a_turned_or_flipped_part():
    x = torch.rand(2, 3, 64, 64)
    symmetric, plain = _model(True), _model(False)
    with torch.inference_mode():
        for turned in (torch.rot90(x, 1, (2, 3)), x.flip(3)):
            torch.testing.assert_close(symmetric(turned), symmetric(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(plain(x.flip(3)), plain(x), atol=1e-4)  # the plain head is not invariant
        with single_view(symmetric):  # a heatmap needs one view: then it acts like the plain head
            torch.testing.assert_close(symmetric(x), plain(x))
        assert symmetric.symmetric


def test_recipe_keeps_the_symmetric_setting():
    recipe = {"backbone": "tf_efficientnet_lite0", "num_classes": 3, **architecture_recipe(_model(True))}
    assert recipe["symmetric"] is True and model_from_recipe(recipe).symmetric
    assert not model_from_recipe({**recipe, "symmetric": False}).symmetric


def test_power_normalisation_is_the_signed_square_root_and_old_recipes_keep_it_off():
    x = torch.rand(1, 3, 64, 64)
    model = build_model("tf_efficientnet_lite0", 3, "multiscale")
    assert model.power_norm and architecture_recipe(model)["power_norm"] is True
    with torch.no_grad():
        normalised = model.pooled_features(x)
        model.power_norm = False
        plain = model.pooled_features(x)
    torch.testing.assert_close(normalised, plain.sign() * plain.abs().sqrt())
    recipe = {"backbone": "tf_efficientnet_lite0", "num_classes": 3, **architecture_recipe(model)}
    del recipe["power_norm"]  # a run stored before power normalisation
    assert model_from_recipe(recipe).power_norm is False

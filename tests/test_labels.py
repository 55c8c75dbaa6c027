"""Parameter labels come from module structure, for any number of modalities."""
import jax
import pytest
from flax import nnx

import mmbal
from mmbal.models import MultimodalClassifier, labels_for, split


@pytest.mark.parametrize("num", [2, 3, 6])
def test_every_leaf_labelled_by_owner(num):
  mods = {f"m{i}": (4 + i,) for i in range(num)}
  model = MultimodalClassifier(mods, 3, feature_dim=4, hidden_dim=8, unimodal="heads",
                               rngs=nnx.Rngs(0))
  _, params, _ = split(model)
  labels = labels_for(model, params)
  assert jax.tree.structure(labels) == jax.tree.structure(params)
  assert set(mmbal.label_names(labels)) == set(mods) | {mmbal.SHARED}
  assert jax.tree.leaves(labels["encoders"]["m1"]) == ["m1"] * len(jax.tree.leaves(params["encoders"]["m1"]))
  assert set(jax.tree.leaves(labels["unimodal_heads"]["m0"])) == {"m0"}
  assert set(jax.tree.leaves(labels["head"])) == {"shared"}


def test_labels_for_custom_model_by_identity():
  class TwoTower(nnx.Module):
    def __init__(self, rngs):
      self.left = nnx.Linear(2, 3, rngs=rngs)
      self.right = nnx.Linear(2, 3, rngs=rngs)
      self.top = nnx.Linear(6, 1, rngs=rngs)
  m = TwoTower(nnx.Rngs(0))
  labels = mmbal.param_labels(m, {"text": m.left, "image": [m.right]})
  assert labels["left"] == {"kernel": "text", "bias": "text"}
  assert labels["right"]["kernel"] == "image"
  assert labels["top"]["kernel"] == "shared"


def test_foreign_owner_module_is_an_error():
  m = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="not part of the model"):
    mmbal.param_labels(m, {"a": nnx.Linear(2, 2, rngs=nnx.Rngs(1))})

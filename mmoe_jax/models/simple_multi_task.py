"""EasyRec's SimpleMultiTask (`model_class: "SimpleMultiTask"`): one tower per task on the
shared input, sharing nothing but the embeddings."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmoe_jax.models.embedding import Embedding, FeatureSpec, embedding_l2
from mmoe_jax.models.mmoe import TowerSpec, tower_logits


class SimpleMultiTask(nn.Module):
  """logits_t = tower_t(x), x the concatenated group `all`.

  Returns (logits, aux) as MMoE, without gates: aux['embedding_l2'].
  """
  features: tuple[FeatureSpec, ...]
  task_towers: tuple[TowerSpec, ...]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    embedded = Embedding(self.features, self.dtype, name='embedding')(inputs)
    x = jnp.concatenate(embedded, axis=-1)
    logits = {t.tower_name: tower_logits(x, t, train) for t in self.task_towers}
    return logits, dict(embedding_l2=embedding_l2(embedded, self.features))

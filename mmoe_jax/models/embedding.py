"""Embedding tables from the feature configs, looked up per feature."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmoe_jax.models.layers import TABLE, declared


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """What the model needs to know about one input feature (plain values, no config).

  kind: 'id' (int32 [B], -1 = missing), 'tag' (int32 [B, L], -1 = padding) or
  'dense' (float32 [B] fed as is or times a learned vector, or [B, K] fed as is).
  """
  feature_name: str
  kind: str
  embedding_name: str  # the table; features with the same name share it
  vocab_size: int  # table rows (0 for a dense feature)
  embedding_dim: int  # 0 for a dense feature fed as is
  combiner: str = 'sum'  # tag features: 'sum' or 'mean'
  padded_rows: int = 0  # zero rows after the vocabulary, so the table divides over devices


class Embedding(nn.Module):
  """Looks up the features of one group; returns a list of [B, D_f] outputs, in order.

  Tables are params `<embedding_name>` of shape [V, D] (axes TABLE), initialized as TF feature
  columns do (truncated normal, stddev 1/sqrt(D)). A missing id (-1) gives a zero
  vector; a tag feature combines its ids with `sum` or `mean`. A table with
  padded_rows is [V + padded_rows, D]: its first V rows are initialized exactly as the
  unpadded table's, the padding is zero, and no id reaches it, so it stays zero (zero
  gradient, zero Adam update) and the model computes what the unpadded one does.

  Every id and tag lookup passes through `perturb(feature_name)`: a no-op unless the
  caller passes a 'perturbations' collection, whose gradient is then the gradient of
  the looked-up vectors, so that a sparse optimizer gets row gradients without a dense
  [V, D] table gradient (training/optimizer.py). Outputs are cast to `dtype` (bf16 under
  mixed precision) after the lookup, so tables stay fp32.
  """
  features: tuple[FeatureSpec, ...]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs):
    tables = {}
    outputs = []
    for spec in self.features:
      x = inputs[spec.feature_name]
      if spec.kind == 'dense' and not spec.embedding_dim:
        outputs.append(x.astype(self.dtype).reshape(x.shape[0], -1))
        continue
      if spec.embedding_name not in tables:
        init = declared(_padded(nn.initializers.truncated_normal(
            stddev=spec.embedding_dim ** -0.5), spec.padded_rows), TABLE)
        tables[spec.embedding_name] = self.param(
            spec.embedding_name, init, (spec.vocab_size, spec.embedding_dim))
      table = tables[spec.embedding_name]
      if spec.kind == 'dense':  # EasyRec's "field embedding": value * a learned vector
        outputs.append((x.astype(jnp.float32)[:, None] * table[0]).astype(self.dtype))
        continue
      mask = (x >= 0)[..., None].astype(self.dtype)
      vectors = jnp.take(table, jnp.maximum(x, 0), axis=0)
      if not self.is_initializing():  # init would add a 'perturbations' collection
        vectors = self.perturb(spec.feature_name, vectors)
      vectors = vectors.astype(self.dtype) * mask
      if spec.kind == 'tag':
        vectors = vectors.sum(axis=1)
        if spec.combiner == 'mean':
          vectors = vectors / jnp.maximum(mask.sum(axis=1), 1.0)
      outputs.append(vectors)
    return outputs


def _padded(init, rows):
  """`init`, followed by `rows` zero rows."""
  if not rows:
    return init
  return lambda key, shape, dtype=jnp.float32: jnp.pad(init(key, shape, dtype), ((0, rows), (0, 0)))


def embedding_l2(embedded, features):
  """l2_loss of the looked-up embeddings: EasyRec's embedding_regularization applies to these."""
  return sum(jnp.sum(jnp.square(e.astype(jnp.float32))) / 2
             for e, spec in zip(embedded, features) if spec.embedding_dim)

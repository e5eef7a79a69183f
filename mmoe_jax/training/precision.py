"""Mixed precision: fp32 parameters and optimizer state, bf16 arithmetic.

The train step keeps fp32 master parameters and hands the model a bf16 copy of the
dense layers' parameters, so every matmul and einsum runs in bf16 while gradients
arrive in fp32 (the cast's transpose). Embedding tables are not copied: a copy would
touch every row each step; the Embedding module casts the looked-up vectors instead.
Losses cast logits to fp32 (losses.task_loss).
"""

import jax
import jax.numpy as jnp


def compute_params(params, dtype):
  """`params` with every floating leaf outside the embedding tables cast to `dtype`."""
  if dtype == jnp.float32:
    return params

  def cast(path, leaf):
    if path[0].key == 'embedding' or not jnp.issubdtype(leaf.dtype, jnp.floating):
      return leaf
    return leaf.astype(dtype)

  return jax.tree_util.tree_map_with_path(cast, params)

"""Mixed precision: fp32 parameters and optimizer state, bf16 arithmetic.

The train step keeps fp32 master parameters and hands the model a bf16 copy of the
dense layers' parameters, so every matmul and einsum runs in bf16 while gradients
arrive in fp32 (the cast's transpose). Embedding tables are not copied: a copy would
touch every row each step; the Embedding module casts the looked-up vectors instead.
Losses cast logits to fp32 (losses.task_loss).
"""

import jax
import jax.numpy as jnp

from mmoe_jax.sharding import is_table


def compute_params(params, axes, dtype):
  """`params` with every floating leaf but the embedding tables cast to `dtype`; `axes`:
  the params' declared axes (a tree like them), which say which leaves are tables."""
  if dtype == jnp.float32:
    return params

  def cast(leaf, logical):
    if is_table(logical) or not jnp.issubdtype(leaf.dtype, jnp.floating):
      return leaf
    return leaf.astype(dtype)

  return jax.tree.map(cast, params, axes)

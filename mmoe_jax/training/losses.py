"""EasyRec's losses: per-tower task losses, L2 on dense kernels, embedding L2.

Names follow EasyRec's logs: cross_entropy_loss_<tower> (CLASSIFICATION),
l2_loss_<tower> (L2_LOSS), regularization_loss and total_loss.
"""

import jax
import jax.numpy as jnp
import optax

from mmoe_jax.models.layers import l2_loss
from mmoe_jax.sharding import is_kernel


def task_loss(logits, label, tower):
  """One tower's mean loss, scaled by its weight; returns (name, value).

  With unit sample weights, TF's SUM_BY_NONZERO_WEIGHTS reduction that EasyRec uses
  is weight * mean over the batch.
  """
  t = tower.tower_name
  logits = logits.astype(jnp.float32)
  if tower.loss_type == 'L2_LOSS':
    return f'l2_loss_{t}', tower.weight * jnp.mean(jnp.square(logits - label))
  if tower.num_class == 1:
    loss = optax.sigmoid_binary_cross_entropy(logits, label)
  else:
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, label.astype(jnp.int32))
  return f'cross_entropy_loss_{t}', tower.weight * jnp.mean(loss)


def kernel_l2(params, axes):
  """l2_loss (sum(W^2)/2) over the dense kernels, as their declared `axes` (a tree like
  `params`) say: experts, gates, towers, outputs.

  Biases, batch-norm scales and embedding tables are excluded, as in EasyRec, whose
  l2_regularization is a kernel_regularizer on its dense layers. In a backbone every
  block's kernels count, SENet's too (EasyRec gives SENet no regularizer).
  """
  return l2_loss([leaf for leaf, logical in zip(jax.tree.leaves(params), jax.tree.leaves(axes))
                  if is_kernel(logical)])


# The clip of Keras' binary_crossentropy on probabilities (its backend epsilon).
ESMM_EPSILON = 1e-7


def esmm_task_losses(logits, labels, cvr, ctr):
  """EasyRec's ESMM losses (model/esmm.py), both on the whole impression space.

  weighted_cross_entropy_loss_<cvr>: cvr.weight * sum_i BCE(y_cvr y_ctr, pCTCVR), pCTCVR
  = sigmoid(z_cvr) sigmoid(z_ctr) clipped to [1e-7, 1 - 1e-7]; for an L2_LOSS cvr tower,
  weighted_l2_loss_<cvr>: cvr.weight * mean_i (y_cvr y_ctr - y_cvr_pred sigmoid(z_ctr))^2.
  weighted_cross_entropy_loss_<ctr>: ctr.weight * sum_i sigmoid_CE(z_ctr, y_ctr).
  The cross entropies are sums over the batch, not means, as in EasyRec.
  """
  z_cvr = logits[cvr.tower_name].astype(jnp.float32)
  z_ctr = logits[ctr.tower_name].astype(jnp.float32)
  y_ctr = labels[ctr.label_name]
  y_ctcvr = labels[cvr.label_name] * y_ctr
  if cvr.loss_type == 'L2_LOSS':
    cvr_term = (f'weighted_l2_loss_{cvr.tower_name}',
                jnp.mean(jnp.square(y_ctcvr - z_cvr * jax.nn.sigmoid(z_ctr))))
  else:
    p = jnp.clip(jax.nn.sigmoid(z_cvr) * jax.nn.sigmoid(z_ctr), ESMM_EPSILON, 1 - ESMM_EPSILON)
    cvr_term = (f'weighted_cross_entropy_loss_{cvr.tower_name}',
                -jnp.sum(y_ctcvr * jnp.log(p) + (1 - y_ctcvr) * jnp.log(1 - p)))
  ctr_loss = jnp.sum(optax.sigmoid_binary_cross_entropy(z_ctr, y_ctr))
  return {cvr_term[0]: cvr.weight * cvr_term[1],
          f'weighted_cross_entropy_loss_{ctr.tower_name}': ctr.weight * ctr_loss}


def total_loss(logits, aux, params, axes, labels, towers, l2_regularization,
               embedding_regularization, model_class='MMoE'):
  """Returns (total_loss, dict of every named loss term); `axes`: the params' declared axes;
  towers: ESMM's are (cvr, ctr)."""
  if model_class == 'ESMM':
    terms = esmm_task_losses(logits, labels, *towers)
  else:
    terms = dict(task_loss(logits[t.tower_name], labels[t.label_name], t) for t in towers)
  terms['regularization_loss'] = (l2_regularization * kernel_l2(params, axes)
                                  + embedding_regularization * aux['embedding_l2'])
  terms['total_loss'] = sum(terms.values())
  return terms['total_loss'], terms

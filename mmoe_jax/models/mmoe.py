"""The built-in MMoE (Ma et al., KDD 2018), as EasyRec's `model_class: "MMoE"`."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmoe_jax.models.embedding import Embedding, FeatureSpec, embedding_l2
from mmoe_jax.models.layers import Dnn, DnnSpec, dense, gate, mix


@dataclasses.dataclass(frozen=True)
class TowerSpec:
  tower_name: str
  num_class: int = 1
  loss_type: str = 'CLASSIFICATION'  # decides the output names (head)
  dnn: DnnSpec = DnnSpec()


def predictions(logits, towers):
  """EasyRec's output dict (rank_model.py `_output_to_prediction_impl`): each tower's head."""
  out = {}
  for tower in towers:
    out.update(head(tower.loss_type, tower.tower_name, logits[tower.tower_name]))
  return out


def head(loss_type, t, z):
  """The outputs of loss type `loss_type` on tower t's output z, keys suffixed _<t>:

    L2_LOSS:                      y_<t> = z [B]
    SIGMOID_L2_LOSS:              y_<t> = sigmoid(z) [B]
    JRC_LOSS (num_class 2):       logits_<t> [B, 2], pos_logits_<t> = z[:, 1],
                                  probs_<t> = softmax(z)[:, 1] [B]
    num_class 1, any other type:  logits_<t> [B], probs_<t> = sigmoid [B]
    CLASSIFICATION, num_class C:  logits_<t> [B, C], probs_<t> = softmax [B, C],
                                  logits_<t>_1 / probs_<t>_1: column 1 of each [B],
                                  logits_<t>_y / probs_<t>_y: the row max of each [B],
                                  y_<t>: the argmax class, int32 [B] (int64 in EasyRec).
  A tower with several losses has the union of their heads.
  """
  if loss_type == 'L2_LOSS':
    return {f'y_{t}': z}
  if loss_type == 'SIGMOID_L2_LOSS':
    return {f'y_{t}': nn.sigmoid(z)}
  if loss_type == 'JRC_LOSS':
    return {f'logits_{t}': z, f'pos_logits_{t}': z[:, 1],
            f'probs_{t}': nn.softmax(z, axis=-1)[:, 1]}
  if z.ndim == 1:
    return {f'logits_{t}': z, f'probs_{t}': nn.sigmoid(z)}
  probs = nn.softmax(z, axis=-1)
  return {f'logits_{t}': z, f'probs_{t}': probs,
          f'logits_{t}_1': z[:, 1], f'probs_{t}_1': probs[:, 1],
          f'logits_{t}_y': z.max(axis=-1), f'probs_{t}_y': probs.max(axis=-1),
          f'y_{t}': jnp.argmax(z, axis=-1)}


class ExpertList(nn.Module):
  """EasyRec's deprecated `experts` list: one Dnn per expert, named by its expert_name.

  The experts may differ in depth and width (not in their last width), so they cannot
  share one [E, D, H] stack: each runs its own matmuls. [B, D] -> [B, E, H].
  """
  experts: tuple[tuple[str, DnnSpec], ...]  # (expert_name, dnn)

  @nn.compact
  def __call__(self, x, *, train: bool):
    return jnp.stack([Dnn(spec, name=name)(x, train=train) for name, spec in self.experts],
                     axis=1)


class MMoE(nn.Module):
  """Shared experts, one softmax gate per task, one tower per task.

  For task k: gate_k = softmax(x W_k + b_k) over E experts, mixed_k = sum_e gate_k[e]
  f_e(x), logits_k = tower_k(mixed_k) (paper, eq. 5-6). The experts run as one stacked
  Dnn ([E, ...] parameters), or, given `experts` (EasyRec's deprecated list, whose
  experts may differ in shape), as an ExpertList; the gates read the same input x as
  the experts.

  Returns (logits, aux): logits[tower_name] is [B] for num_class 1, else [B, C];
  aux['gate_weights'][tower_name] is [B, E]; aux['embedding_l2'] is l2_loss of the
  looked-up embeddings (EasyRec's embedding_regularization applies to those).
  `dtype` is the embeddings' output dtype; the layers compute in their params' dtype.
  """
  features: tuple[FeatureSpec, ...]
  expert_dnn: DnnSpec
  num_expert: int
  task_towers: tuple[TowerSpec, ...]
  experts: tuple[tuple[str, DnnSpec], ...] = ()  # set: expert_dnn is unused, E = len(experts)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    embedded = Embedding(self.features, self.dtype, name='embedding')(inputs)
    x = jnp.concatenate(embedded, axis=-1)  # [B, D]
    if self.experts:
      experts = ExpertList(self.experts, name='experts')(x, train=train)  # [B, E, H]
    else:
      experts = Dnn(self.expert_dnn, self.num_expert, name='expert_dnn')(x, train=train)
    num_expert = experts.shape[1]
    logits, gates = {}, {}
    for tower in self.task_towers:
      gates[tower.tower_name] = gate(x, num_expert, f'gate_{tower.tower_name}')  # [B, E]
      logits[tower.tower_name] = tower_logits(mix(gates[tower.tower_name], experts), tower, train)
    return logits, dict(gate_weights=gates, embedding_l2=embedding_l2(embedded, self.features))


def tower_logits(x, tower, train):
  """One task tower, inside a compact module: the DNN `tower_<name>`, then the dense
  `output_<name>` to num_class logits ([B] for num_class 1, else [B, C])."""
  name = tower.tower_name
  hidden = Dnn(tower.dnn, name=f'tower_{name}')(x, train=train)
  out = dense(tower.num_class, f'output_{name}')(hidden)
  return out[:, 0] if tower.num_class == 1 else out

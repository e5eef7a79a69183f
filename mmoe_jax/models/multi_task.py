"""Multi-task backbone layers: EasyRec's AITMTower (layers/keras/multi_task.py), and CGC,
one PLE extraction network as a backbone layer (not in EasyRec)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmoe_jax.models.layers import KERNEL_INIT, Dnn, DnnSpec, declared
from mmoe_jax.models.ple import ExtractionSpec, extract

# An AITM projection's kernel: inputs 'embed', outputs 'attention' (config.sharding
# .attention). Not ('embed', 'mlp'), so sharding.is_kernel leaves it out of the L2 term:
# EasyRec builds these Dense layers without a regularizer.
PROJECTION = ('embed', 'attention')


def projection(features, name):
  """A Keras Dense(features) with its defaults (bias, glorot_uniform) and no regularizer."""
  return nn.Dense(features, kernel_init=declared(KERNEL_INIT, PROJECTION),
                  bias_init=declared(nn.initializers.zeros, PROJECTION[1:]), name=name)


class AITMTower(nn.Module):
  """EasyRec's AITMTower (Xi et al., KDD 2021, as EasyRec computes it).

  Input: a list [h_0 (this task's tower), h_1 ... h_n (earlier towers)] of [B, D_i].
  The earlier towers pass through stop_gradient (when `stop_gradient`), then one shared
  transfer MLP (when set). Each position i has its own projections query_i, key_i,
  value_i (Dense to d = project_dim, or D_0 when 0). The output [B, d] is row 0 of
  softmax(Q K^T / sqrt(d)) V: this tower's query against every position's key (the paper
  scores each position by its own query instead). query_i for i > 0 never reach the
  output, as in EasyRec, which builds them too.
  """
  project_dim: int = 0
  transfer_mlp: DnnSpec | None = None
  stop_gradient: bool = True

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    d = self.project_dim or inputs[0].shape[-1]
    transfer = Dnn(self.transfer_mlp, name='transfer') if self.transfer_mlp else None
    towers = [inputs[0]]
    for h in inputs[1:]:
      h = jax.lax.stop_gradient(h) if self.stop_gradient else h
      towers.append(transfer(h, train=train) if transfer else h)
    q, k, v = (jnp.stack([projection(d, f'{kind}_{i}')(h) for i, h in enumerate(towers)], axis=1)
               for kind in ('query', 'key', 'value'))  # [B, n + 1, d] each
    scores = jnp.einsum('bd,bnd->bn', q[:, 0], k) / jnp.sqrt(jnp.asarray(d, q.dtype))
    return jnp.einsum('bn,bnd->bd', nn.softmax(scores, axis=-1), v)


class CGC(nn.Module):
  """One extraction network of PLE as a backbone layer (class_name 'CGC'; NOT an EasyRec
  layer): a backbone of CGC blocks is the built-in PLE, for ablations next to MMoE.

  Input: a tensor [B, D], read by every task's experts and gate and by the shared
  experts (a first layer); or the list a CGC with is_last_layer false returns,
  [h_0 ... h_{T-1}, s]. Output: the list of the T task outputs [B, H], and s' last
  unless is_last_layer. Experts and gates are PLE's (models/ple.py `extract`), task t's
  gate named gate_<t>.

  Returns (outputs, aux): aux['gate_weights'] the list of the tasks' [B, n + s] gates,
  aux['share_gate_weights'] the shared gate unless is_last_layer.
  """
  spec: ExtractionSpec
  num_task: int
  is_last_layer: bool = True

  @nn.compact
  def __call__(self, inputs, *, train: bool):
    if isinstance(inputs, list):
      task_inputs, shared = list(inputs[:-1]), inputs[-1]
    else:
      task_inputs, shared = [inputs] * self.num_task, inputs
    names = tuple(str(t) for t in range(self.num_task))
    outputs, shared, gates = extract(self.spec, names, self.is_last_layer, task_inputs, shared,
                                     train)
    aux = dict(gate_weights=[gates[name] for name in names])
    if self.is_last_layer:
      return outputs, aux
    aux['share_gate_weights'] = gates['share']
    return outputs + [shared], aux

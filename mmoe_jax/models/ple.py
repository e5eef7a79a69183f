"""EasyRec's PLE (Tang et al., RecSys 2020), `model_class: "PLE"`: progressive layered
extraction, a stack of extraction networks (CGC layers) with task and shared experts."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmoe_jax.models.embedding import Embedding, FeatureSpec, embedding_l2
from mmoe_jax.models.layers import (Dnn, DnnSpec, DnnWeights, gate, gates, mix, plain,
                                    stacked_dnn)
from mmoe_jax.models.mmoe import TowerSpec, tower_logits


@dataclasses.dataclass(frozen=True)
class ExtractionSpec:
  """EasyRec's ExtractionNetwork message as plain values."""
  network_name: str
  expert_num_per_task: int
  share_num: int = 0
  task_expert_net: DnnSpec = DnnSpec()
  share_expert_net: DnnSpec = DnnSpec()  # read only when share_num > 0


def extract(spec, tower_names, final, task_inputs, shared, train):
  """One extraction network (a CGC layer), as EasyRec wires it; call it inside a compact
  module, whose submodules its experts and gates become (PLE's ExtractionNetwork, the
  backbone's CGC layer).

  Per task t, `expert_num_per_task` experts read the task's input h_t; `share_num`
  shared experts read the shared input s. Task t's gate (`gate_<tower>`) reads h_t and
  mixes [its own experts, the shared experts]. Unless `final`, a shared gate reads s and
  mixes [task 0's experts, task 1's, ..., the shared experts] into the next shared input;
  the last layer has no shared gate (its shared experts still feed every task gate).

  Every task expert of every task is one slice of one stacked Dnn (expert t * n + k is
  task t's expert k), so a layer's task experts run as one einsum, its shared experts as
  another. Past the first layer the task inputs go in stacked, [T, B, D], task t's n
  experts reading block t (StackedDense), without a copy of h_t for each expert.

  In a first layer every expert and gate reads x: there the gates run as one matmul
  (layers.gates), and so do the task and shared experts when their DNNs are the same
  plain one (layers.stacked_dnn), each parameter in its own scope as before.

  Returns (task outputs [B, H] per task, the next shared input or None, gates by
  '<tower>' and 'share').
  """
  n, s = spec.expert_num_per_task, spec.share_num
  num_task = len(tower_names)
  first = all(h is shared for h in task_inputs)  # every expert and gate reads x
  names = [f'gate_{name}' for name in tower_names] + ([] if final else ['gate_share'])
  sizes = [n + s] * num_task + ([] if final else [num_task * n + s])
  if first:
    gate_weights = gates(shared, sizes, names)
  else:
    gate_weights = [gate(h, size, name) for h, size, name in
                    zip(task_inputs + [shared], sizes, names)]
  if first and s and spec.task_expert_net == spec.share_expert_net and plain(
      spec.task_expert_net):
    every = stacked_dnn(spec.task_expert_net, shared, [
        DnnWeights(spec.task_expert_net, num_task * n, name='task_expert_net')(shared.shape[-1]),
        DnnWeights(spec.share_expert_net, s, name='share_expert_net')(shared.shape[-1])])
    task_experts, shared_experts = every[:, :num_task * n], every[:, num_task * n:]
  else:
    # [B, D], read by every expert (the first layer); or [T, B, D], expert t * n + k reading h_t
    expert_input = task_inputs[0] if first else jnp.stack(task_inputs)
    task_experts = Dnn(spec.task_expert_net, num_task * n, not first, name='task_expert_net')(
        expert_input, train=train)  # [B, T * n, H]
    shared_experts = (Dnn(spec.share_expert_net, s, name='share_expert_net')(
        shared, train=train) if s else task_experts[:, :0])  # [B, s, H]
    every = jnp.concatenate([task_experts, shared_experts], axis=1)
  outputs = []
  for t in range(num_task):
    own = task_experts[:, t * n:(t + 1) * n]
    outputs.append(mix(gate_weights[t], jnp.concatenate([own, shared_experts], axis=1)))
  next_shared = None if final else mix(gate_weights[-1], every)
  return outputs, next_shared, dict(zip(list(tower_names) + ['share'], gate_weights))


class ExtractionNetwork(nn.Module):
  """One extraction network of PLE, named `network_name`: `extract` over the towers."""
  spec: ExtractionSpec
  tower_names: tuple[str, ...]
  final: bool

  @nn.compact
  def __call__(self, task_inputs, shared, *, train: bool):
    return extract(self.spec, self.tower_names, self.final, task_inputs, shared, train)


class PLE(nn.Module):
  """Extraction networks in order on x (the group `all`), then tower t on the last
  layer's output for task t.

  Returns (logits, aux) as MMoE; aux['gate_weights']['<network_name>/<tower>'] is the
  gate of a task, '<network_name>/share' the shared gate of a layer but the last.
  """
  features: tuple[FeatureSpec, ...]
  extraction_networks: tuple[ExtractionSpec, ...]
  task_towers: tuple[TowerSpec, ...]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    embedded = Embedding(self.features, self.dtype, name='embedding')(inputs)
    x = jnp.concatenate(embedded, axis=-1)
    names = tuple(t.tower_name for t in self.task_towers)
    task_inputs, shared, gate_weights = [x] * len(names), x, {}
    for i, spec in enumerate(self.extraction_networks):
      layer = ExtractionNetwork(spec, names, final=i == len(self.extraction_networks) - 1,
                                name=spec.network_name)
      task_inputs, shared, gates = layer(task_inputs, shared, train=train)
      gate_weights.update((f'{spec.network_name}/{k}', w) for k, w in gates.items())
    logits = {t.tower_name: tower_logits(h, t, train)
              for t, h in zip(self.task_towers, task_inputs)}
    return logits, dict(gate_weights=gate_weights,
                        embedding_l2=embedding_l2(embedded, self.features))

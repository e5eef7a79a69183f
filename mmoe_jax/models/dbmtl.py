"""EasyRec's DBMTL (deep Bayesian multi-target learning), `model_class: "DBMTL"`: task
towers that read the relation outputs of other towers."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mmoe_jax.models.embedding import Embedding, FeatureSpec, embedding_l2
from mmoe_jax.models.layers import Dnn, DnnSpec, gate, mix
from mmoe_jax.models.mmoe import TowerSpec


def output_spec(num_class):
  """The output layer, Dense(num_class) with bias, as a one-layer Dnn without batch norm or
  activation: built from the block that builds every other dense layer."""
  return DnnSpec(hidden_units=(num_class,), activation='linear', use_bn=False)


@dataclasses.dataclass(frozen=True)
class RelationSpec:
  """A BayesTaskTower's relation fields: the towers it reads, and its relation_dnn."""
  relation_tower_names: tuple[str, ...] = ()
  relation_dnn: DnnSpec = DnnSpec()  # no hidden_units: the identity


class DBMTL(nn.Module):
  """bottom = bottom_dnn(x), x the group `all`; with expert_dnn, task t reads the mixture
  of `num_expert` stacked experts on the bottom under its own gate (an MMoE), else the
  bottom itself. Tower t: f_t = dnn_t(its input); r_t = relation_dnn_t(concat[f_t,
  r_a for a in relation_tower_names]); logits_t = Dense(num_class)(r_t). The towers run
  in `order` (every tower after those it reads), and gradients flow through r_a.

  Returns (logits, aux) as MMoE; aux['gate_weights'][tower] with expert_dnn.
  """
  features: tuple[FeatureSpec, ...]
  task_towers: tuple[TowerSpec, ...]
  relations: tuple[RelationSpec, ...]  # one per tower, in task_towers order
  order: tuple[int, ...]  # indices into task_towers: the order the towers run in
  bottom_dnn: DnnSpec = DnnSpec()  # no hidden_units: the identity
  expert_dnn: DnnSpec | None = None
  num_expert: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    embedded = Embedding(self.features, self.dtype, name='embedding')(inputs)
    x = jnp.concatenate(embedded, axis=-1)
    bottom = Dnn(self.bottom_dnn, name='bottom_dnn')(x, train=train)
    aux = dict(embedding_l2=embedding_l2(embedded, self.features))
    task_inputs = {t.tower_name: bottom for t in self.task_towers}
    if self.expert_dnn is not None:
      experts = Dnn(self.expert_dnn, self.num_expert, name='expert_dnn')(bottom, train=train)
      aux['gate_weights'] = {t.tower_name: gate(bottom, self.num_expert, f'gate_{t.tower_name}')
                             for t in self.task_towers}
      task_inputs = {t: mix(w, experts) for t, w in aux['gate_weights'].items()}
    hidden = {t.tower_name: Dnn(t.dnn, name=f'tower_{t.tower_name}')(
        task_inputs[t.tower_name], train=train) for t in self.task_towers}
    relation, logits = {}, {}
    for i in self.order:
      tower, spec = self.task_towers[i], self.relations[i]
      name = tower.tower_name
      u = jnp.concatenate([hidden[name]] + [relation[a] for a in spec.relation_tower_names],
                          axis=-1)
      relation[name] = Dnn(spec.relation_dnn, name=f'relation_dnn_{name}')(u, train=train)
      out = Dnn(output_spec(tower.num_class), name=f'output_{name}')(relation[name], train=train)
      logits[name] = out[:, 0] if tower.num_class == 1 else out
    return {t.tower_name: logits[t.tower_name] for t in self.task_towers}, aux

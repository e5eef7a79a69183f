"""Models. `build_model` is the one place where config becomes modules."""

from mmoe_jax.config import vocab_size
from mmoe_jax.models.embedding import Embedding, FeatureSpec
from mmoe_jax.models.mmoe import MMoE, DnnSpec, TowerSpec, predictions


def feature_specs(config, group_name='all'):
  """FeatureSpecs of one feature group, in the group's order."""
  by_name = {f.feature_name: f for f in config.feature_configs}
  specs = []
  for name in next(g for g in config.model_config.feature_groups
                   if g.group_name == group_name).feature_names:
    f = by_name[name]
    if f.feature_type == 'TagFeature':
      kind = 'tag'
    elif f.feature_type == 'RawFeature' and not f.boundaries:
      kind = 'dense'
    else:
      kind = 'id'
    vocab = vocab_size(f) or (1 if f.embedding_dim else 0)  # field embedding: one vector
    specs.append(FeatureSpec(feature_name=name, kind=kind,
                             embedding_name=f.embedding_name or f.feature_name,
                             vocab_size=vocab, embedding_dim=f.embedding_dim,
                             combiner=f.combiner))
  return tuple(specs)


def dnn_spec(dnn):
  return DnnSpec(hidden_units=tuple(dnn.hidden_units), dropout_ratio=tuple(dnn.dropout_ratio),
                 activation=dnn.activation, use_bn=dnn.use_bn)


def tower_specs(config):
  return tuple(TowerSpec(tower_name=t.tower_name, num_class=t.num_class, loss_type=t.loss_type,
                         dnn=dnn_spec(t.dnn))
               for t in config.model_config.mmoe.task_towers)


def build_model(config):
  """A validated config -> the Flax module it describes."""
  mmoe = config.model_config.mmoe
  return MMoE(features=feature_specs(config), expert_dnn=dnn_spec(mmoe.expert_dnn),
              num_expert=mmoe.num_expert, task_towers=tower_specs(config))


__all__ = ['build_model', 'feature_specs', 'tower_specs', 'predictions', 'MMoE', 'Embedding',
           'FeatureSpec', 'DnnSpec', 'TowerSpec']

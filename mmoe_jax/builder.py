"""The one place where a validated config becomes Flax modules.

models/ holds the modules and never reads a config; this module reads the config and
hands the modules plain values (specs), so the import direction is config -> builder ->
models and never the other way.
"""

import functools

import jax.numpy as jnp

from mmoe_jax.config import block_order, input_block, relation_order, task_towers, vocab_size
from mmoe_jax.models import esmm, mmoe, registry
from mmoe_jax.models.backbone import Backbone, BlockSpec, InputLayer, MultiTaskModel
from mmoe_jax.models.dbmtl import DBMTL, RelationSpec
from mmoe_jax.models.embedding import FeatureSpec
from mmoe_jax.models.layers import DnnSpec
from mmoe_jax.models.mmoe import MMoE, TowerSpec
from mmoe_jax.models.ple import PLE, ExtractionSpec
from mmoe_jax.models.simple_multi_task import SimpleMultiTask


def feature_specs(config, group_name='all', vocab_multiple=1):
  """FeatureSpecs of one feature group, in the group's order; each table's rows padded
  up to a multiple of `vocab_multiple` (the number of shards of its rows)."""
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
                             combiner=f.combiner, padded_rows=-vocab % vocab_multiple))
  return tuple(specs)


def dnn_spec(dnn):
  return DnnSpec(hidden_units=tuple(dnn.hidden_units), dropout_ratio=tuple(dnn.dropout_ratio),
                 activation=dnn.activation, use_bn=dnn.use_bn)


def tower_specs(config):
  """The towers in EasyRec's order (config/validate.py task_towers; ESMM: cvr, ctr)."""
  return tuple(TowerSpec(tower_name=t.tower_name, num_class=t.num_class, loss_type=t.loss_type,
                         dnn=dnn_spec(t.dnn))
               for t in task_towers(config.model_config))


def predictions_fn(config):
  """logits -> EasyRec's output dict for this model: ESMM adds probs_ctcvr (or y_ctcvr)."""
  module = esmm if config.model_config.model_class == 'ESMM' else mmoe
  return functools.partial(module.predictions, towers=tower_specs(config))


def compute_dtype(config):
  """The activations' dtype: bf16 under train_config.mixed_precision 'BF16', else fp32."""
  return jnp.bfloat16 if config.train_config.mixed_precision == 'BF16' else jnp.float32


def build_model(config, vocab_multiple=1):
  """A validated config -> the Flax module it describes.

  vocab_multiple: every embedding table gets zero rows up to a multiple of this, the
  number of devices its rows are split over (training/sharding.py).
  """
  model_class = config.model_config.model_class
  if model_class == 'MultiTaskModel':
    return multi_task_model(config, vocab_multiple)
  if model_class == 'ESMM':
    return esmm_model(config, vocab_multiple)
  common = dict(features=feature_specs(config, vocab_multiple=vocab_multiple),
                task_towers=tower_specs(config), dtype=compute_dtype(config))
  if model_class == 'SimpleMultiTask':
    return SimpleMultiTask(**common)
  if model_class == 'PLE':
    return PLE(extraction_networks=tuple(
        ExtractionSpec(network_name=n.network_name, expert_num_per_task=n.expert_num_per_task,
                       share_num=n.share_num, task_expert_net=dnn_spec(n.task_expert_net),
                       share_expert_net=dnn_spec(n.share_expert_net) if n.share_num else DnnSpec())
        for n in config.model_config.ple.extraction_networks), **common)
  if model_class == 'DBMTL':
    return dbmtl_model(config, common)
  params = config.model_config.mmoe
  experts = tuple((e.expert_name, dnn_spec(e.dnn)) for e in params.experts)
  return MMoE(expert_dnn=dnn_spec(params.expert_dnn),
              num_expert=len(experts) or params.num_expert, experts=experts, **common)


def esmm_model(config, vocab_multiple):
  """ESMM over its groups' features (EasyRec: the group `all`, fed as is, if none)."""
  params = config.model_config.esmm
  groups = tuple((g.input, dnn_spec(g.dnn)) for g in params.groups) or (('all', DnnSpec()),)
  by_group = {name: feature_specs(config, name, vocab_multiple) for name, _ in groups}
  features = {f.feature_name: f for specs in by_group.values() for f in specs}
  cvr, ctr = tower_specs(config)
  return esmm.ESMM(
      features=tuple(features.values()),
      feature_groups=tuple((g, tuple(f.feature_name for f in fs)) for g, fs in by_group.items()),
      groups=groups, cvr_tower=cvr, ctr_tower=ctr, dtype=compute_dtype(config))


def dbmtl_model(config, common):
  params = config.model_config.dbmtl
  return DBMTL(
      relations=tuple(RelationSpec(tuple(t.relation_tower_names), dnn_spec(t.relation_dnn))
                      for t in params.task_towers),
      order=relation_order(params.task_towers),
      bottom_dnn=dnn_spec(params.bottom_dnn) if 'bottom_dnn' in params else DnnSpec(),
      expert_dnn=dnn_spec(params.expert_dnn) if 'expert_dnn' in params else None,
      num_expert=params.num_expert, **common)


def multi_task_model(config, vocab_multiple=1):
  """EasyRec's MultiTaskModel: the backbone's blocks in topological order, then the towers."""
  backbone = config.model_config.backbone
  blocks = {b.name: b for b in backbone.blocks}
  specs, groups, features = [], {}, {}
  for name in block_order(backbone):
    block = blocks[name]
    if 'input_layer' in block:
      group = block.inputs[0].feature_group_name
      groups[group] = feature_specs(config, group, vocab_multiple)
      features.update((f.feature_name, f) for f in groups[group])
      options = {k: block.input_layer[k] for k in InputLayer.__dataclass_fields__
                 if k in block.input_layer}
      specs.append(BlockSpec(name, InputLayer, tuple(options.items()), group=group))
      continue
    layer = registry.LAYERS[block.keras_layer.class_name] if 'keras_layer' in block else None
    params = block.keras_layer[layer.params].to_dict() if layer and layer.params else {}
    specs.append(BlockSpec(
        name, layer and layer.module, tuple(layer.fields(params).items()) if layer else (),
        inputs=tuple((input_block(i), i.input_slice) for i in block.inputs),
        input_concat_axis=block.input_concat_axis,
        merge_inputs_into_list=block.merge_inputs_into_list, aux=bool(layer and layer.aux)))
  top_mlp = registry.mlp_spec(backbone.top_mlp.to_dict()) if 'top_mlp' in backbone else None
  return MultiTaskModel(
      features=tuple(features.values()),
      feature_groups=tuple((g, tuple(f.feature_name for f in fs)) for g, fs in groups.items()),
      backbone=Backbone(tuple(specs), tuple(backbone.concat_blocks),
                        tuple(backbone.output_blocks), top_mlp),
      task_towers=tower_specs(config), dtype=compute_dtype(config))

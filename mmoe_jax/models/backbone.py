"""EasyRec's component models: a backbone DAG of blocks, then task towers (`MultiTaskModel`).

Values that flow between blocks are tensors [B, ...] or Python lists of values (EasyRec's
multi-output layers return lists). Shapes, as validation infers them before anything is
built, leave out the batch axis: a tuple of ints for a tensor, a list of shapes for a list.
"""

import dataclasses
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmoe_jax.models.embedding import Embedding, FeatureSpec, embedding_l2
from mmoe_jax.models.layers import Dnn, DnnSpec, batch_norm, layer_norm
from mmoe_jax.models.mmoe import TowerSpec, tower_logits

# TF's layer_norm (tf.contrib.layers.layer_norm), which EasyRec's input layer calls.
INPUT_LAYER_NORM_EPSILON = 1e-12


class InputLayer(nn.Module):
  """EasyRec's input_layer block over one feature group's embeddings, a list of [B, D_f].

  Options as EasyRec's InputLayer (layers/common_layers.py): batch norm or layer norm
  (not both), dropout, and feature dropout, which in training drops whole features (one
  Bernoulli(1 - rate) draw per feature and batch, as EasyRec) and divides the kept ones
  by 1 - rate. The output is the concatenation [B, sum D_f] unless one of the output
  options asks for the list, the stack [B, F, D], or [concatenation, list].

  Batch norm is per unit, so normalizing the concatenation normalizes each feature: one
  BatchNorm serves both outputs. Layer norm differs: the list gets one per feature
  (`ln_<i>`), the concatenation its own (`ln`), as in EasyRec.
  """
  do_batch_norm: bool = False
  do_layer_norm: bool = False
  dropout_rate: float = 0.0
  feature_dropout_rate: float = 0.0
  only_output_feature_list: bool = False
  only_output_3d_tensor: bool = False
  output_2d_tensor_and_feature_list: bool = False

  @nn.compact
  def __call__(self, features, *, train: bool):
    dims = [f.shape[-1] for f in features]
    wants_list = (self.only_output_feature_list or self.only_output_3d_tensor
                  or self.output_2d_tensor_and_feature_list)
    wants_2d = not (self.only_output_feature_list or self.only_output_3d_tensor)
    if self.do_batch_norm:
      x = batch_norm(jnp.concatenate(features, axis=-1), train, name='bn')
      features = jnp.split(x, np.cumsum(dims)[:-1], axis=-1)
    listed = list(features)
    flat = jnp.concatenate(features, axis=-1) if wants_2d else None
    if self.do_layer_norm:
      if wants_list:
        listed = [layer_norm(INPUT_LAYER_NORM_EPSILON, f'ln_{i}')(f)
                  for i, f in enumerate(listed)]
      if wants_2d:
        flat = layer_norm(INPUT_LAYER_NORM_EPSILON, 'ln')(flat)
    if self.dropout_rate > 0:  # independent masks for the two outputs, as EasyRec
      dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
      listed = [dropout(f) for f in listed] if wants_list else listed
      flat = dropout(flat) if wants_2d else None
    if train and self.feature_dropout_rate > 0:
      keep = 1.0 - self.feature_dropout_rate
      kept = jax.random.bernoulli(self.make_rng('dropout'), keep, (len(dims),)) / keep  # [F]
      listed = [f * kept[i] for i, f in enumerate(listed)]
      if wants_2d:
        flat = flat * jnp.repeat(kept, np.array(dims), total_repeat_length=sum(dims))
    if self.only_output_feature_list:
      return listed
    if self.only_output_3d_tensor:
      return jnp.stack(listed, axis=1)
    if self.output_2d_tensor_and_feature_list:
      return [flat, listed]
    return flat


def input_layer_shape(options, dims):
  """The output shape of an InputLayer with `options` (its fields) over features of `dims`."""
  if options['only_output_feature_list']:
    return [(d,) for d in dims]
  if options['only_output_3d_tensor']:
    if len(set(dims)) > 1:
      raise ValueError(f'only_output_3d_tensor stacks the features, so their embedding '
                       f'dimensions must be equal; got {dims}')
    return (len(dims), dims[0])
  if options['output_2d_tensor_and_feature_list']:
    return [(sum(dims),), [(d,) for d in dims]]
  return (sum(dims),)


_SLICE = re.compile(r'^\[\s*(-?\d+)?\s*(:\s*(-?\d+)?\s*)?\]$')


def parse_input_slice(text):
  """EasyRec's Input.input_slice in its forms '[i]' and '[a:b]' -> an int or a slice.

  EasyRec evaluates any Python expression there; these two forms pick from a list output.
  """
  m = _SLICE.match(text.strip())
  if not m or (m.group(1) is None and m.group(2) is None):
    raise ValueError(f"input_slice {text!r}: supported forms are '[i]' and '[a:b]'")
  start = int(m.group(1)) if m.group(1) is not None else None
  if m.group(2) is None:
    return start
  return slice(start, int(m.group(3)) if m.group(3) is not None else None)


def select(value, input_slice):
  """`value` picked by an input_slice ('' = all of it); only a list can be sliced."""
  if not input_slice:
    return value
  if not isinstance(value, list):
    raise ValueError(f'input_slice {input_slice!r} needs a list input, got a tensor')
  index = parse_input_slice(input_slice)
  if isinstance(index, int) and not -len(value) <= index < len(value):
    raise ValueError(f'input_slice {input_slice!r} is out of range for a list of {len(value)}')
  return value[index]


def merge_inputs(inputs, axis=-1, concat=jnp.concatenate):
  """EasyRec's merge of several values (layers/backbone.py `merge_inputs`).

  One value stays as it is; if any is a list, all are joined into one list (a tensor
  counting as a list of one); else the tensors are concatenated on `axis` with `concat`
  (validation passes a function of shapes).
  """
  if len(inputs) == 1:
    return inputs[0]
  if any(isinstance(x, list) for x in inputs):
    return [y for x in inputs for y in (x if isinstance(x, list) else [x])]
  return concat(inputs, axis)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One backbone block as plain values: the module to build and what it reads.

  An input-layer block reads the feature group `group`; any other block reads `inputs`,
  pairs of (block name, input_slice), merged as EasyRec merges them. A block with no
  module is EasyRec's block with no layer: its output is its merged inputs.
  """
  name: str
  module: type | None  # InputLayer, the module of a registered layer, or None (identity)
  fields: tuple[tuple[str, Any], ...] = ()  # the module's fields
  group: str = ''
  inputs: tuple[tuple[str, str], ...] = ()
  input_concat_axis: int = -1
  merge_inputs_into_list: bool = False
  aux: bool = False  # the module returns (output, aux dict)


class Backbone(nn.Module):
  """EasyRec's BackboneTower: blocks run in order (topological), then the output.

  The output is the list of `output_blocks` outputs, or the merge of the
  `concat_blocks` outputs; a `top_mlp` then maps it (a list concatenated first) to one
  tensor. Block parameters live under the block's name.
  """
  blocks: tuple[BlockSpec, ...]
  concat_blocks: tuple[str, ...] = ()
  output_blocks: tuple[str, ...] = ()
  top_mlp: DnnSpec | None = None

  @property
  def output_block(self):
    """The block whose output is the backbone's output unchanged ('' if none is)."""
    if len(self.concat_blocks) == 1 and not self.output_blocks and self.top_mlp is None:
      return self.concat_blocks[0]
    return ''

  @nn.compact
  def __call__(self, groups, *, train: bool):
    """groups: feature group name -> list of [B, D_f]. Returns (output, aux by block name)."""
    outputs, aux = {}, {}
    for block in self.blocks:
      layer = block.module and block.module(**dict(block.fields), name=block.name)
      if block.group:
        out = layer(groups[block.group], train=train)
      else:
        inputs = [select(outputs[name], input_slice) for name, input_slice in block.inputs]
        if not block.merge_inputs_into_list:
          inputs = merge_inputs(inputs, block.input_concat_axis)
        out = layer(inputs, train=train) if layer else inputs
        if block.aux:
          out, aux[block.name] = out
      outputs[block.name] = out
    if self.output_blocks:
      result = [outputs[name] for name in self.output_blocks]
    else:
      result = merge_inputs([outputs[name] for name in self.concat_blocks])
    if self.top_mlp is not None:
      if isinstance(result, list):
        result = jnp.concatenate(result, axis=-1)
      result = Dnn(self.top_mlp, name='top_mlp')(result, train=train)
    return result, aux


class MultiTaskModel(nn.Module):
  """EasyRec's `model_class: "MultiTaskModel"`: embeddings, the backbone, one tower per task.

  A list output of the backbone gives tower i its element i (validation checks the
  count); a tensor goes to every tower. Towers, outputs and losses are the built-in
  MMoE's. Returns (logits, aux) as the built-in MMoE: aux['embedding_l2'], and
  aux['gate_weights'] of every gated layer, by tower name where the layer's outputs
  are the towers' inputs, else by '<block>/<task index>', and a layer's shared gate (a CGC
  layer but the last) by '<block>/share'.
  """
  features: tuple[FeatureSpec, ...]  # every feature an input layer reads, once
  feature_groups: tuple[tuple[str, tuple[str, ...]], ...]  # (group name, feature names)
  backbone: Backbone
  task_towers: tuple[TowerSpec, ...]
  dtype: Any = jnp.float32  # the embeddings' output dtype, as MMoE's

  @nn.compact
  def __call__(self, inputs, *, train: bool = False):
    embedded = Embedding(self.features, self.dtype, name='embedding')(inputs)
    by_name = dict(zip((f.feature_name for f in self.features), embedded))
    groups = {group: [by_name[name] for name in names] for group, names in self.feature_groups}
    out, block_aux = self.backbone(groups, train=train)
    towers = self.task_towers
    logits = {t.tower_name: tower_logits(out[i] if isinstance(out, list) else out, t, train)
              for i, t in enumerate(towers)}
    gate_weights = {}
    for block, values in block_aux.items():
      for k, weights in enumerate(values.get('gate_weights', ())):
        key = towers[k].tower_name if block == self.backbone.output_block else f'{block}/{k}'
        gate_weights[key] = weights
      if 'share_gate_weights' in values:
        gate_weights[f'{block}/share'] = values['share_gate_weights']
    return logits, dict(gate_weights=gate_weights,
                        embedding_l2=embedding_l2(embedded, self.features))

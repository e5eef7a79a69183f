"""The layers a backbone block names in `keras_layer.class_name`.

A layer is a Flax module, called as `module(inputs, train=...)`, and one `register` line:

  register('SENet', SENet, params='senet', infer=senet_shape)

- params: the keras_layer field that holds its parameters (its message must be in
  schema.KERAS_LAYER's oneof), '' for none. The parameters reach the module as fields of
  the same names, as a dict of plain values, unless `fields` converts them.
- infer: (params, input shape) -> output shape, raising ValueError for parameters or an
  input the layer cannot take. Shapes leave out the batch axis (see models/backbone.py).
  Validation runs it block by block before anything is built, so a wrong wiring is a
  config error that names the block.
- aux: the module returns (output, aux dict), e.g. aux['gate_weights'].
"""

import dataclasses
from typing import Any, Callable

from mmoe_jax.models.layers import ACTIVATIONS, INITIALIZERS, Dnn, DnnSpec, MMoELayer, SENet
from mmoe_jax.models.multi_task import CGC, AITMTower
from mmoe_jax.models.ple import ExtractionSpec


@dataclasses.dataclass(frozen=True)
class Layer:
  module: type
  params: str
  infer: Callable[[dict, Any], Any]
  fields: Callable[[dict], dict] = dict
  aux: bool = False


LAYERS = {}


def register(class_name, module, *, params, infer, fields=dict, aux=False):
  LAYERS[class_name] = Layer(module, params, infer, fields, aux)


def describe(shape):
  """A shape for error messages: [B, 272], or list of 2: [B, 128], [B, 128]."""
  if isinstance(shape, list):
    return f"list of {len(shape)}: {', '.join(map(describe, shape))}"
  return f"[B, {', '.join(map(str, shape))}]"


def is_2d(shape):
  return isinstance(shape, tuple) and len(shape) == 1


def mlp_spec(p):
  """EasyRec's MLP message (a dict) as a DnnSpec; layers past the end of dropout_ratio get none."""
  n = len(p['hidden_units'])
  return DnnSpec(
      hidden_units=tuple(p['hidden_units']),
      dropout_ratio=tuple(p['dropout_ratio']) + (0.0,) * (n - len(p['dropout_ratio'])),
      activation=p['activation'].removeprefix('tf.nn.'), use_bn=p['use_bn'],
      use_final_bn=p['use_final_bn'],
      final_activation=p['final_activation'].removeprefix('tf.nn.'),
      use_bias=p['use_bias'], use_final_bias=p['use_final_bias'], initializer=p['initializer'],
      use_bn_after_activation=p['use_bn_after_activation'])


def check_mlp(p, field='mlp'):
  """Raises ValueError for an MLP message that mlp_spec cannot turn into a working Dnn."""
  units, dropout = list(p['hidden_units']), list(p['dropout_ratio'])
  if not units or any(u <= 0 for u in units):
    raise ValueError(f'{field}.hidden_units: needs at least one layer, all positive; got {units}')
  if len(dropout) > len(units) or any(not 0 <= r < 1 for r in dropout):
    raise ValueError(f'{field}.dropout_ratio: at most one value per layer, each in [0, 1); '
                     f'got {dropout}')
  for key in ('activation', 'final_activation'):
    if p[key].removeprefix('tf.nn.') not in ACTIVATIONS:
      raise ValueError(f"{field}.{key}: {p[key]!r} is not one of {', '.join(ACTIVATIONS)}")
  if p['initializer'] not in INITIALIZERS:
    raise ValueError(f"{field}.initializer: {p['initializer']!r} is not one of "
                     f"{', '.join(INITIALIZERS)}")
  if p['add_to_outputs']:
    raise ValueError(f'{field}.add_to_outputs: not supported')


def mlp_shape(p, shape, field='mlp'):
  check_mlp(p, field)
  if not isinstance(shape, tuple):
    raise ValueError(f'an MLP takes a tensor, got a {describe(shape)}')
  return shape[:-1] + (p['hidden_units'][-1],)


def senet_shape(p, shape):
  if not isinstance(shape, list) or not all(map(is_2d, shape)):
    raise ValueError('SENet takes a list of [B, D] field embeddings (an input_layer with '
                     f'only_output_feature_list), got a {describe(shape)}')
  g, r = p['num_squeeze_group'], p['reduction_ratio']
  if g <= 0 or r <= 0:
    raise ValueError('senet.num_squeeze_group and senet.reduction_ratio must be > 0')
  for i, (dim,) in enumerate(shape):
    if dim % g:
      raise ValueError(f'field {i} has dimension {dim}, which senet.num_squeeze_group {g} '
                       'does not divide')
  return (sum(dim for (dim,) in shape),)


def mmoe_shape(p, shape):
  num_expert, num_task = p['num_expert'], p['num_task']
  if num_task <= 0 or num_expert <= 0:
    raise ValueError(f'mmoe.num_task and mmoe.num_expert must be set (> 0); got '
                     f'num_task {num_task}, num_expert {num_expert}')
  if 'expert_mlp' in p:
    expert = mlp_shape(p['expert_mlp'], shape, 'mmoe.expert_mlp')
    if not is_2d(shape):
      raise ValueError(f'with expert_mlp, MMoE takes a [B, D] tensor, got a {describe(shape)}')
  else:
    if not (isinstance(shape, list) and len(shape) == num_expert + 1 and all(map(is_2d, shape))
            and len(set(shape[:num_expert])) == 1):
      raise ValueError(
          f'without expert_mlp, MMoE takes a list of {num_expert} expert outputs of one '
          f'shape [B, H] then the gate input [B, D] (merge_inputs_into_list); got a '
          f'{describe(shape)}')
    expert = shape[0]
  return [expert] * num_task


def mmoe_fields(p):
  expert_mlp = mlp_spec(p['expert_mlp']) if 'expert_mlp' in p else None
  return dict(num_task=p['num_task'], num_expert=p['num_expert'], expert_mlp=expert_mlp,
              shared_gate=p['shared_gate'])


def aitm_shape(p, shape):
  if not (isinstance(shape, list) and len(shape) >= 2 and all(map(is_2d, shape))):
    raise ValueError('AITMTower takes a list [this task\'s tower, earlier towers...] of at '
                     'least two [B, D] tensors (merge_inputs_into_list with two or more '
                     f'inputs); got a {describe(shape)}')
  if p['project_dim'] < 0:
    raise ValueError(f"aitm.project_dim: must be >= 0 (0: the width of input 0), got "
                     f"{p['project_dim']}")
  if 'transfer_mlp' in p:
    if len(set(shape[1:])) > 1:
      raise ValueError('aitm.transfer_mlp: one MLP transfers every earlier tower, so their '
                       f'widths must agree; got {describe(shape)}')
    mlp_shape(p['transfer_mlp'], shape[1], 'aitm.transfer_mlp')
  return (p['project_dim'] or shape[0][0],)


def aitm_fields(p):
  transfer = mlp_spec(p['transfer_mlp']) if 'transfer_mlp' in p else None
  return dict(project_dim=p['project_dim'], transfer_mlp=transfer,
              stop_gradient=p['stop_gradient'])


def check_dnn(p, field):
  """Raises ValueError for a DNN message (a dict) the experts cannot be built from."""
  units, dropout = list(p['hidden_units']), list(p['dropout_ratio'])
  if not units or any(u <= 0 for u in units):
    raise ValueError(f'{field}.hidden_units: experts need at least one layer, all positive; '
                     f'got {units}')
  if len(dropout) not in (0, 1, len(units)) or any(not 0 <= r < 1 for r in dropout):
    raise ValueError(f'{field}.dropout_ratio: 0, 1 or len(hidden_units) values, each in '
                     f'[0, 1); got {dropout}')
  if p['activation'].removeprefix('tf.nn.') not in ACTIVATIONS:
    raise ValueError(f"{field}.activation: {p['activation']!r} is not one of "
                     f"{', '.join(ACTIVATIONS)}")


def dnn_spec(p):
  """EasyRec's DNN message (a dict) as a DnnSpec."""
  return DnnSpec(hidden_units=tuple(p['hidden_units']), dropout_ratio=tuple(p['dropout_ratio']),
                 activation=p['activation'].removeprefix('tf.nn.'), use_bn=p['use_bn'])


def cgc_shape(p, shape):
  try:
    return _cgc_shape(p, shape)
  except ValueError as e:  # the layer is this project's: say so where it is misconfigured
    raise ValueError(f"{e} (CGC is mmoe_jax's layer, not EasyRec's)") from None


def _cgc_shape(p, shape):
  num_task, n, s = p['num_task'], p['expert_num_per_task'], p['share_num']
  if num_task <= 0 or n <= 0 or s < 0:
    raise ValueError(f'cgc.num_task and cgc.expert_num_per_task must be set (> 0), '
                     f'cgc.share_num >= 0; got num_task {num_task}, expert_num_per_task {n}, '
                     f'share_num {s}')
  check_dnn(p['task_expert_net'], 'cgc.task_expert_net')
  width = p['task_expert_net']['hidden_units'][-1]
  if s:
    if 'share_expert_net' not in p:
      raise ValueError(f'cgc.share_expert_net: share_num {s} needs shared experts')
    check_dnn(p['share_expert_net'], 'cgc.share_expert_net')
    if p['share_expert_net']['hidden_units'][-1] != width:
      raise ValueError('cgc.share_expert_net.hidden_units: the gates mix task and shared '
                       'experts, so their last widths must agree; task_expert_net ends in '
                       f"{width}, share_expert_net in {p['share_expert_net']['hidden_units'][-1]}")
  if not (is_2d(shape) or (isinstance(shape, list) and len(shape) == num_task + 1
                           and all(map(is_2d, shape)))):
    raise ValueError(f'CGC takes a [B, D] tensor, or the list of {num_task} task inputs and '
                     f'the shared input (a CGC with is_last_layer false); got a '
                     f'{describe(shape)}')
  return [(width,)] * (num_task + (not p['is_last_layer']))


def cgc_fields(p):
  share = dnn_spec(p['share_expert_net']) if p['share_num'] else DnnSpec()
  spec = ExtractionSpec(network_name='', expert_num_per_task=p['expert_num_per_task'],
                        share_num=p['share_num'], task_expert_net=dnn_spec(p['task_expert_net']),
                        share_expert_net=share)
  return dict(spec=spec, num_task=p['num_task'], is_last_layer=p['is_last_layer'])


register('MLP', Dnn, params='mlp', infer=mlp_shape, fields=lambda p: dict(spec=mlp_spec(p)))
register('SENet', SENet, params='senet', infer=senet_shape)
register('MMoE', MMoELayer, params='mmoe', infer=mmoe_shape, fields=mmoe_fields, aux=True)
register('AITMTower', AITMTower, params='aitm', infer=aitm_shape, fields=aitm_fields)
register('CGC', CGC, params='cgc', infer=cgc_shape, fields=cgc_fields, aux=True)  # not EasyRec's

"""Checks a MultiTaskModel's backbone before anything is built, and resolves EasyRec's rules.

Names, wiring and cycles first, then the shapes block by block (each layer's `infer` in
models/registry.py), so that a misspelled block, a cycle, a layer fed the wrong kind of
input or a backbone whose outputs do not match the towers is a ConfigError naming the
block, seconds after the start instead of after data generation.
"""

from mmoe_jax.config.complete import ConfigError, complete, did_you_mean
from mmoe_jax.config.schema import BLOCK, KERAS_LAYER

PATH = 'model_config.backbone'
UNSUPPORTED_INPUT_LAYER = {'output_seq_and_normal_feature': False, 'wide_output_dim': 0}
INPUT_LAYER_OUTPUTS = ('only_output_feature_list', 'only_output_3d_tensor',
                       'output_2d_tensor_and_feature_list')


def validate_backbone(model, feature_dims, num_towers):
  """Checks model.backbone and makes EasyRec's implicit rules explicit in it.

  Made explicit: a keras or identity block's input naming a feature group (and no block)
  reads it through a default input_layer block named after the group; with neither concat_blocks
  nor output_blocks set, the leaf blocks are concatenated.

  Args:
    model: the model_config, complete.
    feature_dims: feature name -> width of its embedding output.
    num_towers: the number of task towers.
  """
  from mmoe_jax.models import registry  # here: reading a config needs no jax or flax
  backbone = model.backbone
  groups = {g.group_name: tuple(g.feature_names) for g in model.feature_groups}
  if not backbone.blocks:
    raise ConfigError(f'{PATH}.blocks: a backbone needs at least one block')
  names = [b.name for b in backbone.blocks]
  seen = set()
  for i, name in enumerate(names):
    if name in seen:
      raise ConfigError(f'{PATH}.blocks[{i}].name: block {name!r} is repeated')
    seen.add(name)
  for i, block in enumerate(backbone.blocks):
    _check_block(block, f'{PATH}.blocks[{i}]', names, groups, registry.LAYERS)
  _add_implicit_input_layers(backbone, names)
  order = block_order(backbone)
  if backbone.concat_blocks and backbone.output_blocks:
    raise ConfigError(f'{PATH}: set concat_blocks or output_blocks, not both')
  for key in ('concat_blocks', 'output_blocks'):
    for j, name in enumerate(backbone[key]):
      _known_block(name, names, f'{PATH}.{key}[{j}]')
  if not backbone.concat_blocks and not backbone.output_blocks:
    read = {input_block(i) for b in backbone.blocks if 'input_layer' not in b for i in b.inputs}
    backbone.concat_blocks = tuple(b.name for b in backbone.blocks if b.name not in read)
  if 'top_mlp' in backbone and 'top_mlp' in names:
    raise ConfigError(f"{PATH}.blocks: 'top_mlp' names the top_mlp's parameters; rename "
                      'the block')
  shape = _infer_shapes(backbone, order, groups, feature_dims, registry)
  _check_towers(backbone, shape, num_towers, registry.describe)


def block_order(backbone):
  """Block names in topological order (ties in config order); ConfigError on a cycle."""
  deps = {b.name: [] if 'input_layer' in b else [input_block(i) for i in b.inputs]
          for b in backbone.blocks}
  order, done = [], set()
  while len(order) < len(deps):
    ready = [n for n in deps if n not in done and all(d in done for d in deps[n])]
    if not ready:
      raise ConfigError(f"{PATH}.blocks: the blocks form a cycle: "
                        f"{' -> '.join(_cycle(deps, done))}")
    order.append(ready[0])
    done.add(ready[0])
  return order


def input_block(inp):
  """The block an Input of a keras block reads (a feature group: its input_layer block)."""
  return inp.get('block_name') or inp.get('feature_group_name')


def _cycle(deps, done):
  """One cycle among the blocks not done, as a path that ends where it starts."""
  path = [next(n for n in deps if n not in done)]
  while True:
    nxt = next(d for d in deps[path[-1]] if d not in done)
    if nxt in path:
      return path[path.index(nxt):] + [nxt]
    path.append(nxt)


def _check_block(block, path, names, groups, layers):
  label = f'{path} (block {block.name!r})'
  if not block.inputs:
    raise ConfigError(f'{label}.inputs: a block needs at least one input')
  if 'input_layer' in block:
    inp = block.inputs[0]
    if len(block.inputs) != 1 or 'feature_group_name' not in inp or inp.input_slice:
      raise ConfigError(f'{label}.inputs: an input_layer block reads exactly one '
                        'feature_group_name, whole')
    _known_group(inp.feature_group_name, groups, f'{label}.inputs[0].feature_group_name')
    options = block.input_layer
    for key, supported in UNSUPPORTED_INPUT_LAYER.items():
      if options[key] != supported:
        raise ConfigError(f'{label}.input_layer.{key}: only {supported!r} is supported '
                          '(no sequence or wide features here)')
    if options.do_batch_norm and options.do_layer_norm:
      raise ConfigError(f'{label}.input_layer: do_batch_norm and do_layer_norm cannot both be '
                        'set (as EasyRec)')
    if sum(bool(options[k]) for k in INPUT_LAYER_OUTPUTS) > 1:
      raise ConfigError(f'{label}.input_layer: set at most one of '
                        f"{', '.join(INPUT_LAYER_OUTPUTS)}")
    for key in ('dropout_rate', 'feature_dropout_rate'):
      if not 0 <= options[key] < 1:
        raise ConfigError(f'{label}.input_layer.{key}: must be in [0, 1)')
    return
  if 'keras_layer' in block:
    _check_keras_layer(block.keras_layer, label, layers)
  if block.name in groups:
    raise ConfigError(f'{label}.name: {block.name!r} is a feature group; only an input_layer '
                      'block may take that name')
  for j, inp in enumerate(block.inputs):
    if 'block_name' in inp:
      _known_block(inp.block_name, names, f'{label}.inputs[{j}].block_name')
    elif inp.feature_group_name not in names:
      _known_group(inp.feature_group_name, groups, f'{label}.inputs[{j}].feature_group_name')


def _check_keras_layer(keras, label, layers):
  if keras.class_name not in layers:
    raise ConfigError(f'{label}.keras_layer.class_name: unknown layer class '
                      f'{keras.class_name!r}{did_you_mean(keras.class_name, layers)}; known: '
                      f"{', '.join(sorted(layers))}")
  wanted = layers[keras.class_name].params
  given = [k for k in KERAS_LAYER.oneof if k in keras]
  if given != ([wanted] if wanted else []):
    needs = f'its parameters in keras_layer.{wanted}' if wanted else 'no parameters'
    raise ConfigError(f'{label}.keras_layer: class {keras.class_name!r} takes {needs}; '
                      f"got {', '.join(f'keras_layer.{k}' for k in given) or 'none'}")


def _add_implicit_input_layers(backbone, names):
  """A feature_group_name input of a keras or identity block that names no block reads
  the group through a default input_layer block of the same name (EasyRec's backbone does
  this)."""
  implicit = []
  for block in backbone.blocks:
    for inp in (block.inputs if 'input_layer' not in block else ()):
      group = inp.get('feature_group_name')
      if group and group not in names and group not in implicit:
        implicit.append(group)
  backbone.blocks = tuple(backbone.blocks) + tuple(
      complete(dict(name=g, inputs=[dict(feature_group_name=g)], input_layer={}), BLOCK,
               f'{PATH}.blocks[{len(backbone.blocks) + k}]')
      for k, g in enumerate(implicit))


def _infer_shapes(backbone, order, groups, feature_dims, registry):
  """The shape of every block's output, in order; returns the backbone's output shape."""
  from mmoe_jax.models import backbone as backbone_lib
  blocks = {b.name: (i, b) for i, b in enumerate(backbone.blocks)}
  shapes = {}
  for name in order:
    i, block = blocks[name]
    label = f'{PATH}.blocks[{i}] (block {name!r})'
    if 'input_layer' in block:
      dims = [feature_dims[f] for f in groups[block.inputs[0].feature_group_name]]
      try:
        shapes[name] = backbone_lib.input_layer_shape(block.input_layer, dims)
      except ValueError as e:
        raise ConfigError(f'{label}.input_layer: {e}') from None
      continue
    inputs = []
    for j, inp in enumerate(block.inputs):
      try:
        inputs.append(backbone_lib.select(shapes[input_block(inp)], inp.input_slice))
      except ValueError as e:
        raise ConfigError(f'{label}.inputs[{j}]: {e}') from None
    try:
      if not block.merge_inputs_into_list:
        inputs = backbone_lib.merge_inputs(inputs, block.input_concat_axis, _concat_shapes)
    except ValueError as e:
      raise ConfigError(f'{label}.inputs: {e}') from None
    if 'keras_layer' not in block:  # the identity: EasyRec's block with no layer
      shapes[name] = inputs
      continue
    layer = registry.LAYERS[block.keras_layer.class_name]
    params = block.keras_layer[layer.params].to_dict() if layer.params else {}
    try:
      shapes[name] = layer.infer(params, inputs)
    except ValueError as e:
      raise ConfigError(f'{label}.keras_layer ({block.keras_layer.class_name}): {e}') from None
  if backbone.output_blocks:
    shape = [shapes[name] for name in backbone.output_blocks]
  else:
    try:
      shape = backbone_lib.merge_inputs([shapes[name] for name in backbone.concat_blocks], -1,
                                        _concat_shapes)
    except ValueError as e:
      raise ConfigError(f'{PATH}.concat_blocks {list(backbone.concat_blocks)}: {e}') from None
  if 'top_mlp' in backbone:
    try:
      flat = _concat_shapes(shape, -1) if isinstance(shape, list) else shape
      shape = registry.mlp_shape(backbone.top_mlp.to_dict(), flat, 'top_mlp')
    except ValueError as e:
      raise ConfigError(f'{PATH}.top_mlp: {e}') from None
  return shape


def _concat_shapes(shapes, axis):
  """The shape of jnp.concatenate(tensors of `shapes`, axis) (axis counts the batch axis)."""
  if any(isinstance(s, list) for s in shapes):
    raise ValueError('cannot concatenate a list output; select from it with input_slice')
  rank = len(shapes[0]) + 1
  if any(len(s) + 1 != rank for s in shapes) or not (-rank <= axis < rank) or axis % rank == 0:
    raise ValueError(f'cannot concatenate shapes {[f"[B, {list(s)}]" for s in shapes]} on '
                     f'axis {axis}')
  k = axis % rank - 1
  if any(s[:k] + s[k + 1:] != shapes[0][:k] + shapes[0][k + 1:] for s in shapes):
    raise ValueError(f'cannot concatenate shapes {[list(s) for s in shapes]} on axis {axis}: '
                     'the other dimensions differ')
  return shapes[0][:k] + (sum(s[k] for s in shapes),) + shapes[0][k + 1:]


def _check_towers(backbone, shape, num_towers, describe):
  sources = list(backbone.output_blocks or backbone.concat_blocks)
  where = f"the output of block{'s' if len(sources) > 1 else ''} {', '.join(map(repr, sources))}"
  if 'top_mlp' in backbone:
    where += ' after top_mlp'
  if isinstance(shape, list):
    if len(shape) != num_towers:
      raise ConfigError(
          f'{PATH}: {where} is a list of {len(shape)}, one per task tower, but '
          f'model_params has {num_towers} task_towers (an MMoE layer gives num_task outputs)')
    bad = [k for k, s in enumerate(shape) if not (isinstance(s, tuple) and len(s) == 1)]
  else:
    bad = [] if len(shape) == 1 else ['all']
  if bad:
    raise ConfigError(f'{PATH}: {where} ({describe(shape)}) must give each task tower a '
                      f'[B, D] tensor')


def _known_block(name, names, path):
  if name not in names:
    raise ConfigError(f'{path}: no block named {name!r}{did_you_mean(name, names)}; blocks: '
                      f"{', '.join(names)}")


def _known_group(name, groups, path):
  if name not in groups:
    raise ConfigError(f'{path}: no feature group named {name!r}{did_you_mean(name, groups)}; '
                      f"groups: {', '.join(groups)}")

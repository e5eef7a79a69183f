"""Checks a complete config for consistency and resolves EasyRec's implicit rules.

Everything here runs before any data is read or any array is built, so a typo in a
feature, label or tower name costs seconds, not a training run.
"""

from mmoe_jax.config.backbone import validate_backbone
from mmoe_jax.config.complete import ConfigError, complete, did_you_mean
from mmoe_jax.config.schema import EVAL_METRICS

ID_TYPES = ('IdFeature', 'TagFeature')
FEATURE_TYPES = ID_TYPES + ('RawFeature',)
INPUT_TYPES = ('INT32', 'INT64', 'STRING', 'FLOAT', 'DOUBLE', 'BOOL')
LOSS_TYPES = ('CLASSIFICATION', 'L2_LOSS')
INPUT_CLASSES = ('CSVInput', 'CSVInputV2', 'TFDSInput')  # TFDSInput: not in EasyRec
WIDE_DEEP = ('DEEP',)  # every group feeds the deep part; there is no wide part
ACTIVATIONS = ('relu', 'sigmoid', 'tanh', 'elu', 'selu', 'gelu', 'swish', 'leaky_relu', 'linear')
# model_class -> the model_config field with its task_towers and l2_regularization
MODEL_PARAMS = {'MMoE': 'mmoe', 'MultiTaskModel': 'model_params', 'ESMM': 'esmm', 'PLE': 'ple',
                'DBMTL': 'dbmtl', 'SimpleMultiTask': 'simple_multi_task'}


def model_params(model_config):
  """The section holding task_towers and l2_regularization: `mmoe` for the built-in MMoE,
  `model_params` for a MultiTaskModel (EasyRec's names)."""
  return model_config[MODEL_PARAMS[model_config.model_class]]


def task_towers(model_config):
  """The model's towers in EasyRec's order: task_towers, or ESMM's (cvr_tower, ctr_tower)."""
  if model_config.model_class == 'ESMM':
    return (model_config.esmm.cvr_tower, model_config.esmm.ctr_tower)
  return model_params(model_config).task_towers


def validate(config):
  """Returns a locked copy of `config` with EasyRec's implicit values made explicit.

  Resolved: feature_name (defaults to input_names[0]), task_towers[i].label_name
  (defaults to label_fields[i]), empty metrics_set (auc for CLASSIFICATION, else
  mean_squared_error), activation 'tf.nn.x' -> 'x', and a backbone's implicit input
  layers and concat_blocks (config/backbone.py).

  Raises:
    ConfigError naming the offending field path.
  """
  config = complete(config)  # re-checks fields and types after command-line overrides
  data, model = config.data_config, config.model_config
  inputs = _unique([f.input_name for f in data.input_fields], 'data_config.input_fields',
                   'input_name')
  for f, field in enumerate(data.input_fields):
    _one_of(field.input_type, INPUT_TYPES, f'data_config.input_fields[{f}].input_type')
  for i, label in enumerate(data.label_fields):
    _known(label, inputs, f'data_config.label_fields[{i}]', 'input field')
  if data.batch_size <= 0 or data.eval_batch_size <= 0:
    raise ConfigError('data_config.batch_size and eval_batch_size must be positive')
  if data.input_type not in INPUT_CLASSES:
    raise ConfigError(f'data_config.input_type: {data.input_type!r} is not supported '
                      "(supported: 'CSVInput', 'TFDSInput')")
  if data.input_type == 'TFDSInput':
    if not data.tfds.name:
      raise ConfigError("data_config.tfds.name: input_type 'TFDSInput' needs a tfds dataset "
                        "name, e.g. 'census_income_kdd'")
    if not config.train_input_path:
      raise ConfigError("train_input_path: with input_type 'TFDSInput', the split to train "
                        "on, e.g. 'train'")
  if len(data.separator) != 1:
    raise ConfigError(f'data_config.separator: must be one character, got {data.separator!r}')

  _validate_features(config.feature_configs, inputs)
  features = {f.feature_name: f for f in config.feature_configs}
  if 'task_correlation' in config.synthetic and not config.train_input_path:
    _validate_task_correlation(config)

  _one_of(model.model_class, tuple(MODEL_PARAMS), 'model_config.model_class')
  section = MODEL_PARAMS[model.model_class]
  if section not in model:
    raise ConfigError(f'model_config: model_class {model.model_class!r} needs a '
                      f'model_config.{section} section')
  backbone = model.model_class == 'MultiTaskModel'
  if backbone != ('backbone' in model):
    raise ConfigError('model_config.backbone: model_class MultiTaskModel needs a backbone, and '
                      'only it reads one')
  groups = _unique([g.group_name for g in model.feature_groups], 'model_config.feature_groups',
                   'group_name')
  for g, group in enumerate(model.feature_groups):
    _one_of(group.wide_deep, WIDE_DEEP, f'model_config.feature_groups[{g}].wide_deep')
  reads_all = not backbone and not (model.model_class == 'ESMM' and model.esmm.groups)
  if reads_all and 'all' not in groups:
    raise ConfigError(f"model_config.feature_groups: the built-in {model.model_class} reads the "
                      f"group named 'all' (as EasyRec); got {sorted(groups)}")
  for g, group in enumerate(model.feature_groups):
    if not group.feature_names:
      raise ConfigError(f'model_config.feature_groups[{g}].feature_names: empty')
    for j, name in enumerate(group.feature_names):
      _known(name, features, f'model_config.feature_groups[{g}].feature_names[{j}]', 'feature')
  params = model_params(model)
  if model.model_class == 'ESMM':
    _validate_esmm(model.esmm, groups, data.label_fields)
  else:
    _validate_towers(params.task_towers, f'model_config.{section}', data.label_fields)
  if backbone:
    validate_backbone(model, {name: feature_dim(f) for name, f in features.items()},
                      len(params.task_towers))
  elif model.model_class in MODEL_CHECKS:
    MODEL_CHECKS[model.model_class](params)
  if params.l2_regularization < 0 or model.embedding_regularization < 0:
    raise ConfigError('model_config: regularization scales must be >= 0')

  train = config.train_config
  if train.num_steps <= 0 and data.num_epochs <= 0:
    raise ConfigError('train_config.num_steps: set num_steps or data_config.num_epochs > 0')
  if train.save_checkpoints_steps <= 0 or train.log_step_count_steps <= 0:
    raise ConfigError('train_config: save_checkpoints_steps and log_step_count_steps must be > 0')
  if train.keep_checkpoint_max <= 0:
    raise ConfigError('train_config.keep_checkpoint_max: must be > 0')
  if train.optimizer_config.use_moving_average:
    raise ConfigError('train_config.optimizer_config.use_moving_average: not supported yet')
  optimizer = optimizer_name(train.optimizer_config)
  lr = train.optimizer_config[optimizer].learning_rate
  if 'exponential_decay_learning_rate' in lr and lr.exponential_decay_learning_rate.decay_steps <= 0:
    raise ConfigError(f'train_config.optimizer_config.{optimizer}.learning_rate.'
                      'exponential_decay_learning_rate.decay_steps: must be > 0')
  train.mixed_precision = train.mixed_precision.upper()
  _one_of(train.mixed_precision, ('', 'FP32', 'BF16'), 'train_config.mixed_precision')
  _one_of(data.input_mode, ('auto', 'device', 'streaming'), 'data_config.input_mode')
  k = train.steps_per_dispatch
  if k < 0 or (k and (train.log_step_count_steps % k or train.save_checkpoints_steps % k)):
    raise ConfigError(f'train_config.steps_per_dispatch: {k} must be 0 (auto) or divide '
                      'log_step_count_steps and save_checkpoints_steps, so that logs and '
                      'checkpoints land on their steps')
  _validate_sharding(config.sharding)
  config.lock()
  return config


LOGICAL_AXES = ('vocab', 'embed', 'expert', 'mlp', 'batch', 'replica')


def _validate_sharding(sharding):
  """The mesh's names and sizes, and that every rule names mesh axes once (the device
  count is checked when the mesh is made, training/sharding.py)."""
  axes = list(sharding.mesh_axes)
  if not axes or len(set(axes)) != len(axes) or len(sharding.mesh_shape) != len(axes):
    raise ConfigError('sharding.mesh_axes, sharding.mesh_shape: distinct axis names, one size '
                      f'each; got {axes} and {list(sharding.mesh_shape)}')
  if any(n == 0 or n < -1 for n in sharding.mesh_shape) or list(sharding.mesh_shape).count(-1) > 1:
    raise ConfigError('sharding.mesh_shape: sizes are > 0, and at most one is -1 (the rest), '
                      f'got {list(sharding.mesh_shape)}')
  for logical in LOGICAL_AXES:
    rule = list(sharding[logical])
    if len(set(rule)) != len(rule):
      raise ConfigError(f'sharding.{logical}: a mesh axis is repeated in {rule}')
    for i, name in enumerate(rule):
      _known(name, axes, f'sharding.{logical}[{i}]', 'mesh axis')


def _validate_features(feature_configs, inputs):
  for i, f in enumerate(feature_configs):
    path = f'feature_configs[{i}]'
    if not f.input_names:
      raise ConfigError(f'{path}.input_names: a feature needs an input field')
    if len(f.input_names) > 1:
      raise ConfigError(f'{path}.input_names: one input per feature is supported, '
                        f'got {list(f.input_names)}')
    _known(f.input_names[0], inputs, f'{path}.input_names[0]', 'input field')
    if not f.feature_name:
      f.feature_name = f.input_names[0]
    _one_of(f.feature_type, FEATURE_TYPES, f'{path}.feature_type')
    if f.feature_type in ID_TYPES:
      given = [k for k in ('hash_bucket_size', 'num_buckets', 'vocab_list') if f[k]]
      if len(given) != 1:
        raise ConfigError(f'{path} ({f.feature_name}): set exactly one of hash_bucket_size, '
                          f'num_buckets, vocab_list (got {given or "none"})')
      if f.embedding_dim <= 0:
        raise ConfigError(f'{path}.embedding_dim: {f.feature_type} needs embedding_dim > 0')
      _one_of(f.combiner, ('sum', 'mean'), f'{path}.combiner')
    else:
      if f.raw_input_dim < 1:
        raise ConfigError(f'{path}.raw_input_dim: must be >= 1')
      if f.raw_input_dim > 1 and (f.boundaries or f.embedding_dim):
        raise ConfigError(f'{path}.raw_input_dim: a RawFeature of {f.raw_input_dim} values is '
                          'fed as is: set neither boundaries nor embedding_dim')
      if list(f.boundaries) != sorted(f.boundaries):
        raise ConfigError(f'{path}.boundaries: must be sorted ascending')
      if f.boundaries and f.embedding_dim <= 0:
        raise ConfigError(f'{path}.embedding_dim: a bucketized RawFeature needs embedding_dim > 0')
    if f.embedding_dim < 0:
      raise ConfigError(f'{path}.embedding_dim: must be >= 0')
  _unique([f.feature_name for f in feature_configs], 'feature_configs', 'feature_name')
  tables = {}
  for i, f in enumerate(feature_configs):
    if f.feature_type == 'RawFeature' and not f.boundaries:
      continue
    shape = (vocab_size(f), f.embedding_dim)
    name = f.embedding_name or f.feature_name
    if tables.setdefault(name, shape) != shape:
      raise ConfigError(f'feature_configs[{i}].embedding_name: table {name!r} is shared with '
                        f'shape {tables[name]} but this feature needs {shape}')


def _validate_task_correlation(config):
  """The generated data has input field `x` (input_dim values) and labels y1, y2."""
  from mmoe_jax.data import task_correlation as tc  # plain numpy; no cycle
  spec, path = config.synthetic.task_correlation, 'synthetic.task_correlation'
  if not -1 <= spec.correlation <= 1:
    raise ConfigError(f'{path}.correlation: must be in [-1, 1], got {spec.correlation}')
  if tuple(config.data_config.label_fields) != tc.LABELS:
    raise ConfigError(f'data_config.label_fields: the {path} data has labels {list(tc.LABELS)}, '
                      f'got {list(config.data_config.label_fields)}')
  for i, f in enumerate(config.feature_configs):
    if f.input_names[0] == tc.INPUT and f.raw_input_dim != spec.input_dim:
      raise ConfigError(f'feature_configs[{i}].raw_input_dim: {f.raw_input_dim} != '
                        f'{path}.input_dim ({spec.input_dim})')
    if f.input_names[0] not in (tc.INPUT,):
      raise ConfigError(f'feature_configs[{i}].input_names: the {path} data has only the '
                        f'input {tc.INPUT!r}, got {f.input_names[0]!r}')


def optimizer_name(optimizer_config):
  """The optimizer_config oneof that is set: 'adam_optimizer' or 'lazy_adam_optimizer'."""
  return 'lazy_adam_optimizer' if 'lazy_adam_optimizer' in optimizer_config else 'adam_optimizer'


def vocab_size(feature):
  """Rows of a feature's embedding table (0 for a dense RawFeature)."""
  if feature.feature_type == 'RawFeature':
    return len(feature.boundaries) + 1 if feature.boundaries else 0
  return feature.hash_bucket_size or feature.num_buckets or len(feature.vocab_list)


def feature_dim(feature):
  """Width of a feature's embedding output: embedding_dim, or 1 for a raw value fed as is."""
  return feature.embedding_dim or feature.raw_input_dim


def _validate_mmoe(mmoe):
  path = 'model_config.mmoe'
  if mmoe.experts:
    _validate_expert_list(mmoe, path)
    return
  if mmoe.num_expert <= 0:
    raise ConfigError(f'{path}.num_expert: must be > 0 with expert_dnn')
  if not mmoe.expert_dnn.hidden_units:
    raise ConfigError(f'{path}.expert_dnn.hidden_units: experts need at least one layer')
  _validate_dnn(mmoe.expert_dnn, f'{path}.expert_dnn')


def _validate_expert_list(mmoe, path):
  """EasyRec's deprecated `experts` list: one DNN per expert, outputs stacked for the gates."""
  if mmoe.expert_dnn.hidden_units:
    raise ConfigError(f'{path}: set expert_dnn (with num_expert) or the deprecated experts list, '
                      'not both')
  if mmoe.num_expert not in (0, len(mmoe.experts)):
    raise ConfigError(f'{path}.num_expert: {mmoe.num_expert}, but the experts list has '
                      f'{len(mmoe.experts)} experts (leave num_expert unset with experts)')
  _unique([e.expert_name for e in mmoe.experts], f'{path}.experts', 'expert_name')
  for i, expert in enumerate(mmoe.experts):
    if not expert.dnn.hidden_units:
      raise ConfigError(f'{path}.experts[{i}].dnn.hidden_units: an expert needs at least one layer')
    _validate_dnn(expert.dnn, f'{path}.experts[{i}].dnn')
  widths = {e.expert_name: e.dnn.hidden_units[-1] for e in mmoe.experts}
  if len(set(widths.values())) > 1:
    raise ConfigError(f'{path}.experts: the gates mix the experts\' outputs, so their last '
                      f'hidden_units must agree; got {widths}')


def _validate_esmm(esmm, groups, label_fields):
  """ESMM: per-group DNNs, then a cvr and a ctr tower of one logit each (EasyRec's asserts).

  The towers are validated in EasyRec's internal order (cvr, ctr), so that without
  label_name the cvr tower takes label_fields[0] and the ctr tower label_fields[1].
  """
  path = 'model_config.esmm'
  _unique([g.input for g in esmm.groups], f'{path}.groups', 'input')
  for i, group in enumerate(esmm.groups):
    _known(group.input, groups, f'{path}.groups[{i}].input', 'feature group')
    _validate_dnn(group.dnn, f'{path}.groups[{i}].dnn')
  for i, name in enumerate(('cvr_tower', 'ctr_tower')):
    tower = esmm[name]
    _validate_tower(tower, f'{path}.{name}', i, label_fields)
    if tower.num_class != 1:
      raise ConfigError(f'{path}.{name}.num_class: ESMM towers have one output, got '
                        f'{tower.num_class}')
  if esmm.ctr_tower.loss_type != 'CLASSIFICATION':
    raise ConfigError(f'{path}.ctr_tower.loss_type: the ctr tower is a binary CLASSIFICATION, '
                      f'got {esmm.ctr_tower.loss_type}')
  if esmm.cvr_tower.tower_name == esmm.ctr_tower.tower_name:
    raise ConfigError(f'{path}.ctr_tower.tower_name: {esmm.ctr_tower.tower_name!r} is also the '
                      'cvr tower\'s name')


def _validate_ple(ple):
  """PLE: every layer's experts, and equal widths among the experts one gate mixes."""
  path = 'model_config.ple'
  networks = ple.extraction_networks
  if not networks:
    raise ConfigError(f'{path}.extraction_networks: at least one layer is needed')
  _unique([n.network_name for n in networks], f'{path}.extraction_networks', 'network_name')
  for i, net in enumerate(networks):
    npath = f'{path}.extraction_networks[{i}]'
    if net.expert_num_per_task <= 0:
      raise ConfigError(f'{npath}.expert_num_per_task: must be > 0 (required), got '
                        f'{net.expert_num_per_task}')
    if net.share_num < 0:
      raise ConfigError(f'{npath}.share_num: must be >= 0, got {net.share_num}')
    if not net.task_expert_net.hidden_units:
      raise ConfigError(f'{npath}.task_expert_net.hidden_units: experts need at least one layer')
    _validate_dnn(net.task_expert_net, f'{npath}.task_expert_net')
    if not net.share_num:
      continue
    if 'share_expert_net' not in net or not net.share_expert_net.hidden_units:
      raise ConfigError(f'{npath}.share_expert_net: share_num {net.share_num} needs shared '
                        'experts with at least one layer')
    _validate_dnn(net.share_expert_net, f'{npath}.share_expert_net')
    task_width = net.task_expert_net.hidden_units[-1]
    share_width = net.share_expert_net.hidden_units[-1]
    if task_width != share_width:
      raise ConfigError(f'{npath}.share_expert_net.hidden_units: the gates mix task and shared '
                        f'experts, so their last widths must agree; task_expert_net ends in '
                        f'{task_width}, share_expert_net in {share_width}')


def _validate_dbmtl(dbmtl):
  """DBMTL: the bottom, the optional MMoE, and the relations between towers (a DAG)."""
  path = 'model_config.dbmtl'
  if 'bottom_dnn' in dbmtl:
    _validate_dnn(dbmtl.bottom_dnn, f'{path}.bottom_dnn')
  if 'expert_dnn' in dbmtl:
    if dbmtl.num_expert <= 0:
      raise ConfigError(f'{path}.num_expert: must be > 0 with expert_dnn')
    if not dbmtl.expert_dnn.hidden_units:
      raise ConfigError(f'{path}.expert_dnn.hidden_units: experts need at least one layer')
    _validate_dnn(dbmtl.expert_dnn, f'{path}.expert_dnn')
  elif dbmtl.num_expert:
    raise ConfigError(f'{path}.num_expert: {dbmtl.num_expert} experts need an expert_dnn')
  for i, tower in enumerate(dbmtl.task_towers):
    _validate_dnn(tower.relation_dnn, f'{path}.task_towers[{i}].relation_dnn')
  relation_order(dbmtl.task_towers, f'{path}.task_towers')


def relation_order(towers, path='task_towers'):
  """The indices of DBMTL's towers in an order where every tower follows the towers it
  reads (its relation_tower_names); config order where the relations allow.

  EasyRec runs the towers in config order (a tower reading a later one fails there);
  any order that respects the relations computes the same outputs.

  Raises:
    ConfigError naming an unknown tower, a repeated one, or a cycle.
  """
  index = {t.tower_name: i for i, t in enumerate(towers)}
  for i, tower in enumerate(towers):
    names = tower.relation_tower_names
    for j, name in enumerate(names):
      _known(name, index, f'{path}[{i}].relation_tower_names[{j}]', 'tower')
      if name in names[:j]:
        raise ConfigError(f'{path}[{i}].relation_tower_names[{j}]: {name!r} is repeated')
  order, done = [], set()
  while len(order) < len(towers):
    ready = [i for i, t in enumerate(towers) if i not in done
             and all(index[name] in done for name in t.relation_tower_names)]
    if not ready:
      cycle = _cycle(towers, index, done)
      raise ConfigError(f'{path}[{cycle[0]}].relation_tower_names: the towers read each other '
                        'in a cycle: ' + ' -> '.join(towers[i].tower_name for i in cycle))
    order.append(ready[0])
    done.add(ready[0])
  return tuple(order)


def _cycle(towers, index, done):
  """A cycle among the towers not in `done` (each has a relation outside `done`): indices,
  the first repeated at the end."""
  path = [next(i for i in range(len(towers)) if i not in done)]
  while path.count(path[-1]) < 2:
    path.append(next(index[name] for name in towers[path[-1]].relation_tower_names
                     if index[name] not in done))
  return path[path.index(path[-1]):]


def _validate_towers(towers, path, label_fields):
  if not towers:
    raise ConfigError(f'{path}.task_towers: at least one tower is needed')
  _unique([t.tower_name for t in towers], f'{path}.task_towers', 'tower_name')
  for i, tower in enumerate(towers):
    _validate_tower(tower, f'{path}.task_towers[{i}]', i, label_fields)


def _validate_tower(tower, tpath, i, label_fields):
  """One tower, the i-th of its model (EasyRec gives it label_fields[i] if unset)."""
  if not tower.label_name:  # EasyRec: towers take label_fields in order
    if i >= len(label_fields):
      raise ConfigError(f'{tpath}.label_name: unset, and data_config.label_fields has no '
                        f'entry {i} to take it from')
    tower.label_name = label_fields[i]
  _known(tower.label_name, label_fields, f'{tpath}.label_name', 'label field')
  _one_of(tower.loss_type, LOSS_TYPES, f'{tpath}.loss_type')
  if tower.num_class < 1 or (tower.loss_type == 'L2_LOSS' and tower.num_class != 1):
    raise ConfigError(f'{tpath}.num_class: must be >= 1 (and 1 for L2_LOSS)')
  if not tower.metrics_set:
    metric = 'auc' if tower.loss_type == 'CLASSIFICATION' else 'mean_squared_error'
    tower.metrics_set = (complete({metric: {}}, EVAL_METRICS),)
  for m, metric in enumerate(tower.metrics_set):
    if 'auc' in metric and (tower.loss_type != 'CLASSIFICATION' or tower.num_class > 2):
      raise ConfigError(f'{tpath}.metrics_set[{m}].auc: needs a binary CLASSIFICATION tower')
  _validate_dnn(tower.dnn, f'{tpath}.dnn')


def _validate_dnn(dnn, path):
  if any(h <= 0 for h in dnn.hidden_units):
    raise ConfigError(f'{path}.hidden_units: must be positive, got {list(dnn.hidden_units)}')
  if len(dnn.dropout_ratio) not in (0, 1, len(dnn.hidden_units)):
    raise ConfigError(f'{path}.dropout_ratio: give 0, 1 or len(hidden_units) values')
  if any(not 0 <= r < 1 for r in dnn.dropout_ratio):
    raise ConfigError(f'{path}.dropout_ratio: each value must be in [0, 1)')
  dnn.activation = dnn.activation.removeprefix('tf.nn.')
  _one_of(dnn.activation, ACTIVATIONS, f'{path}.activation')


def _unique(names, path, key):
  seen = set()
  for i, name in enumerate(names):
    if name in seen:
      raise ConfigError(f'{path}[{i}].{key}: {name!r} is repeated')
    seen.add(name)
  return seen


def _known(name, known, path, what):
  if name not in known:
    raise ConfigError(f'{path}: unknown {what} {name!r}{did_you_mean(name, known)}')


def _one_of(value, allowed, path):
  if value not in allowed:
    raise ConfigError(f'{path}: {value!r} is not one of {", ".join(allowed)}')


# model_class -> the checks of its own model section (every model's towers are checked)
MODEL_CHECKS = {'MMoE': _validate_mmoe, 'PLE': _validate_ple, 'DBMTL': _validate_dbmtl}

"""Checks a complete config for consistency and resolves EasyRec's implicit rules.

Everything here runs before any data is read or any array is built, so a typo in a
feature, label or tower name costs seconds, not a training run.
"""

from mmoe_jax.config import schema
from mmoe_jax.config.backbone import validate_backbone
from mmoe_jax.config.complete import ConfigError, complete, did_you_mean
from mmoe_jax.config.schema import EVAL_METRICS
from mmoe_jax.metrics import GROUP_FIELDS, L2_TYPES

ID_TYPES = ('IdFeature', 'TagFeature')
FEATURE_TYPES = ID_TYPES + ('RawFeature',)
INPUT_TYPES = ('INT32', 'INT64', 'STRING', 'FLOAT', 'DOUBLE', 'BOOL')
LOSS_TYPES = ('CLASSIFICATION', 'L2_LOSS', 'SIGMOID_L2_LOSS', 'BINARY_FOCAL_LOSS', 'PAIR_WISE_LOSS',
              'PAIRWISE_LOGISTIC_LOSS', 'PAIRWISE_FOCAL_LOSS', 'JRC_LOSS', 'F1_REWEIGHTED_LOSS')
# The loss types auc is defined for (rank_model.py `_build_metric_impl`'s binary_loss_set).
AUC_LOSS_TYPES = ('CLASSIFICATION', 'BINARY_FOCAL_LOSS', 'PAIR_WISE_LOSS', 'PAIRWISE_LOGISTIC_LOSS',
                  'PAIRWISE_FOCAL_LOSS', 'JRC_LOSS', 'F1_REWEIGHTED_LOSS')
# loss_type -> the num_class its head takes (rank_model.py asserts it); CLASSIFICATION: any
LOSS_NUM_CLASS = {**dict.fromkeys(AUC_LOSS_TYPES[1:] + L2_TYPES, 1), 'JRC_LOSS': 2}
# jrc_loss.loss_weight_strategy values a run takes (the random ones draw from the step's
# rng, losses.task_losses); 'uncertainty' (two learnt weights) is not implemented.
JRC_STRATEGIES = ('fixed', 'random_uniform', 'random_normal', 'random_bernoulli')
INPUT_CLASSES = ('CSVInput', 'CSVInputV2', 'TFDSInput', 'ParquetInput')  # TFDSInput: not in EasyRec
WIDE_DEEP = ('DEEP',)  # every group feeds the deep part; there is no wide part
ACTIVATIONS = ('relu', 'sigmoid', 'tanh', 'elu', 'selu', 'gelu', 'swish', 'leaky_relu', 'linear',
               'dice')
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
  (defaults to label_fields[i]), empty metrics_set (auc for CLASSIFICATION with num_class
  1 or 2, accuracy with more classes, mean_squared_error for L2_LOSS), activation
  'tf.nn.x' -> 'x', and a backbone's implicit input layers and concat_blocks
  (config/backbone.py).

  Raises:
    ConfigError naming the offending field path.
  """
  config = complete(config)  # re-checks fields and types after command-line overrides
  data, model = config.data_config, config.model_config
  _unique([f.input_name for f in data.input_fields], 'data_config.input_fields', 'input_name')
  inputs = {f.input_name: f for f in data.input_fields}
  for f, field in enumerate(data.input_fields):
    _one_of(field.input_type, INPUT_TYPES, f'data_config.input_fields[{f}].input_type')
  for i, label in enumerate(data.label_fields):
    _known(label, inputs, f'data_config.label_fields[{i}]', 'input field')
  if data.input_type not in INPUT_CLASSES:
    raise ConfigError(f'data_config.input_type: {data.input_type!r} is not supported '
                      "(supported: 'CSVInput', 'ParquetInput', 'TFDSInput')")
  if data.input_type == 'TFDSInput':
    if not data.tfds.name:
      raise ConfigError("data_config.tfds.name: input_type 'TFDSInput' needs a tfds dataset "
                        "name, e.g. 'census_income_kdd'")
    if not config.train_input_path:
      raise ConfigError("train_input_path: with input_type 'TFDSInput', the split to train "
                        "on, e.g. 'train'")
    if data.file_shard:
      raise ConfigError("data_config.file_shard: shards files between processes; "
                        "input_type 'TFDSInput' reads a split, not files")
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
  label_types = {name: inputs[name].input_type for name in data.label_fields}
  if model.model_class == 'ESMM':
    _validate_esmm(model.esmm, groups, label_types)
  else:
    _validate_towers(params.task_towers, f'model_config.{section}', label_types)
  _validate_training_signals(config, inputs)
  _validate_group_fields(config, section)
  if backbone:
    validate_backbone(model, {name: feature_dim(f) for name, f in features.items()},
                      len(params.task_towers))
  elif model.model_class in MODEL_CHECKS:
    MODEL_CHECKS[model.model_class](params)
  if params.l2_regularization < 0 or model.embedding_regularization < 0:
    raise ConfigError('model_config: regularization scales must be >= 0')

  train = config.train_config
  _validate_counts(config)
  _validate_optimizer(train.optimizer_config, 'train_config.optimizer_config')
  train.mixed_precision = train.mixed_precision.upper()
  _one_of(train.mixed_precision, ('', 'FP32', 'BF16'), 'train_config.mixed_precision')
  _one_of(data.input_mode, ('auto', 'device', 'streaming'), 'data_config.input_mode')
  k = train.steps_per_dispatch
  if k < 0 or (k and (train.log_step_count_steps % k or train.save_checkpoints_steps % k)):
    raise ConfigError(f'train_config.steps_per_dispatch: {k} must be 0 (auto) or divide '
                      'log_step_count_steps and save_checkpoints_steps, so that logs and '
                      'checkpoints land on their steps')
  _validate_sharding(config.sharding)
  _validate_export(config.export_config)
  config.lock()
  return config


EXPORTER_TYPES = ('final', 'latest', 'best', 'none')
# EasyRec's early stop hooks, which an unset early_stop_func picks by metric_bigger
EARLY_STOP_HOOKS = ('stop_if_no_increase_hook', 'stop_if_no_decrease_hook')


def _validate_export(export):
  """export_config (docs/serving.md): the exporter type, counts, early_stop_func's form."""
  _one_of(export.exporter_type, EXPORTER_TYPES, 'export_config.exporter_type')
  if export.exports_to_keep < 1:
    raise ConfigError(f'export_config.exports_to_keep: {export.exports_to_keep} must be >= 1')
  if export.enable_early_stop and export.max_check_steps <= 0 and not export.early_stop_func:
    raise ConfigError(f'export_config.max_check_steps: {export.max_check_steps} must be > 0')
  func = export.early_stop_func
  if func.rpartition('.')[2] in EARLY_STOP_HOOKS:
    raise ConfigError(f'export_config.early_stop_func: {func!r} is the default that an unset '
                      'early_stop_func picks by metric_bigger (with max_check_steps); leave it '
                      'unset, or name a function f(eval_results, early_stop_params)')
  if func and '.' not in func:
    raise ConfigError(f'export_config.early_stop_func: {func!r} must be a module path and a '
                      "function name, 'package.module.function'")


LOGICAL_AXES = ('vocab', 'embed', 'expert', 'mlp', 'batch', 'replica', 'attention')


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
      input_type = inputs[f.input_names[0]].input_type
      # EasyRec splits tags as strings and looks vocab_list (strings) up in string columns;
      # an integer column fails there with a dtype error, and a float one needs `precision`
      # to be hashed (not supported) or is not an id at all.
      if input_type not in ('STRING', 'INT32', 'INT64'):
        raise ConfigError(f"{path}.input_names[0]: input field '{f.input_names[0]}' is "
                          f'{input_type}; {f.feature_type} reads a STRING or INT field')
      if input_type != 'STRING' and (f.feature_type == 'TagFeature' or f.vocab_list):
        raise ConfigError(f"{path}.input_names[0]: input field '{f.input_names[0]}' is "
                          f"{input_type}; {'vocab_list' if f.vocab_list else 'TagFeature'} "
                          'reads a STRING field')
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
  """The optimizer_config oneof that is set, e.g. 'adam_optimizer'."""
  return next(name for name in schema.OPTIMIZER_CONFIG.oneof if name in optimizer_config)


def _at_least_0(v):
  return v >= 0


def _above_0(v):
  return v > 0


def _fraction(v):
  return 0 <= v < 1


# Optimizer and learning-rate fields -> (test, the values it passes). Other values are ones
# EasyRec's TF1 optimizers reject, divide by zero with (NaN rates or updates), or that mean
# nothing (a negative rate or decay). Keyed by field name, or (message name, field name)
# where one name has different limits in different messages.
OPTIMIZER_LIMITS = {
    **dict.fromkeys(('learning_rate', 'initial_learning_rate', 'learning_rate_base',
                     'burnin_learning_rate', 'min_learning_rate', 'warmup_learning_rate',
                     'end_learning_rate', 'decay_factor', 'burnin_steps', 'warmup_steps',
                     'hold_base_rate_steps', 'step_scaling_rate', 'power', 'weight_decay',
                     'momentum_optimizer_value', 'epsilon', 'l1_reg', 'l2_reg',
                     'l2_shrinkage_reg'), (_at_least_0, '>= 0')),
    **dict.fromkeys(('decay_steps', 'total_steps', 'hidden_size'), (_above_0, '> 0')),
    ('LearningRateSchedule', 'step'): (_above_0, '> 0'),  # EasyRec: 'First step cannot be zero'
    'beta1': (_fraction, 'in [0, 1)'),  # 1 divides by 1 - beta^t = 0
    'beta2': (_fraction, 'in [0, 1)'),
    'decay': (lambda v: 0 <= v <= 1, 'in [0, 1]'),  # RMSProp's
    'learning_rate_power': (lambda v: v <= 0, '<= 0'),  # TF1 FtrlOptimizer's check
    ('AdagradOptimizer', 'initial_accumulator_value'): (_above_0, '> 0'),  # TF1's check
    ('FtrlOptimizer', 'initial_accumulator_value'): (_at_least_0, '>= 0'),  # TF1's check
}


def _validate_optimizer(optimizer_config, path):
  if optimizer_config.use_moving_average:
    raise ConfigError(f'{path}.use_moving_average: not supported yet')
  _check_limits(optimizer_config, schema.OPTIMIZER_CONFIG, path)
  name = optimizer_name(optimizer_config)
  lr = optimizer_config[name].learning_rate
  path = f'{path}.{name}.learning_rate'
  if 'exponential_decay_learning_rate' in lr:
    exp = lr.exponential_decay_learning_rate
    if exp.burnin_learning_rate != 0 and exp.burnin_steps == 0:
      raise ConfigError(f'{path}.exponential_decay_learning_rate.burnin_steps: must be > 0 with '
                        f'burnin_learning_rate {exp.burnin_learning_rate} (the burn-in ramps '
                        'from it over burnin_steps)')
  if 'manual_step_learning_rate' in lr:
    steps = [entry.step for entry in lr.manual_step_learning_rate.schedule]
    if not steps:
      raise ConfigError(f'{path}.manual_step_learning_rate.schedule: empty (EasyRec: "Empty '
                        'learning rate schedule")')
    for i in range(1, len(steps)):
      if steps[i] <= steps[i - 1]:
        raise ConfigError(f'{path}.manual_step_learning_rate.schedule[{i}].step: {steps[i]}, '
                          f'but steps must increase (schedule[{i - 1}].step is {steps[i - 1]})')
  if 'cosine_decay_learning_rate' in lr:
    cos = lr.cosine_decay_learning_rate
    if cos.learning_rate_base < cos.warmup_learning_rate:
      raise ConfigError(f'{path}.cosine_decay_learning_rate.warmup_learning_rate: '
                        f'{cos.warmup_learning_rate} is above learning_rate_base '
                        f'{cos.learning_rate_base} (EasyRec rejects it)')
    if cos.total_steps <= cos.warmup_steps + cos.hold_base_rate_steps:
      raise ConfigError(f'{path}.cosine_decay_learning_rate.total_steps: {cos.total_steps} must '
                        f'be above warmup_steps + hold_base_rate_steps '
                        f'({cos.warmup_steps + cos.hold_base_rate_steps}): the cosine phase '
                        'needs a step')


def _check_limits(config, message, path):
  """OPTIMIZER_LIMITS on every scalar under `config`, an instance of schema `message`."""
  for key, spec in message.fields.items():
    if key not in config:
      continue
    field, value = f'{path}.{key}', config[key]
    item = spec.item if isinstance(spec, schema.Repeated) else spec
    if isinstance(item, schema.Message):
      if isinstance(spec, schema.Repeated):
        for i, v in enumerate(value):
          _check_limits(v, item, f'{field}[{i}]')
      else:
        _check_limits(value, item, field)
      continue
    test, allowed = OPTIMIZER_LIMITS.get((message.name, key)) or OPTIMIZER_LIMITS.get(
        key, (None, None))
    if test and not test(value):
      raise ConfigError(f'{field}: {value} must be {allowed}')


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


def _validate_counts(config):
  """Step counts and sizes. EasyRec declares them uint32, so a negative value never parses
  there; 0 means unset for num_steps and num_epochs, and EasyRec (main.py) refuses a run
  with both unset."""
  data, train = config.data_config, config.train_config
  for path, value in (('train_config.num_steps', train.num_steps),
                      ('data_config.num_epochs', data.num_epochs)):
    if value < 0:
      raise ConfigError(f'{path}: {value} is negative (0 = unset)')
  if train.num_steps == 0 and data.num_epochs == 0:
    raise ConfigError('train_config.num_steps, data_config.num_epochs: both are 0 (unset); set '
                      'either to a number > 0 (with both, training stops at the first reached)')
  for path, value in (('data_config.batch_size', data.batch_size),
                      ('data_config.eval_batch_size', data.eval_batch_size),
                      ('train_config.save_checkpoints_steps', train.save_checkpoints_steps),
                      ('train_config.log_step_count_steps', train.log_step_count_steps)):
    if value <= 0:
      raise ConfigError(f'{path}: {value} must be > 0')
  if train.keep_checkpoint_max < 0:  # 0 keeps every checkpoint, as TF's Saver in EasyRec
    raise ConfigError(f'train_config.keep_checkpoint_max: {train.keep_checkpoint_max} is '
                      'negative (0 = keep every checkpoint)')


def _validate_metric(metric, tower, path):
  """EasyRec's rules (rank_model.py `_build_metric_impl`), refused where EasyRec asserts."""
  classification = tower.loss_type == 'CLASSIFICATION'
  if 'auc' in metric and tower.loss_type not in AUC_LOSS_TYPES:
    raise ConfigError(f'{path}.auc: needs a tower of a binary loss type '
                      f'({", ".join(AUC_LOSS_TYPES)}), not {tower.loss_type}')
  if 'auc' in metric and classification and tower.num_class > 2:
    raise ConfigError(f'{path}.auc: needs a CLASSIFICATION tower with num_class 1 or 2')
  for name in ('mean_squared_error', 'mean_absolute_error', 'root_mean_squared_error'):
    if name in metric and classification and tower.num_class > 1:
      raise ConfigError(f'{path}.{name}: not defined for a CLASSIFICATION tower with '
                        f'num_class {tower.num_class} (EasyRec refuses it too); use accuracy')
  if 'accuracy' in metric and not (classification and tower.num_class > 1):
    raise ConfigError(f'{path}.accuracy: needs a CLASSIFICATION tower with num_class > 1')
  # EasyRec reads y_<t> of an L2 type, else probs_<t>: mean_squared_error for any loss type
  # of one output, mean_absolute_error for CLASSIFICATION only.
  for name in ('mean_squared_error', 'root_mean_squared_error'):
    if name in metric and tower.num_class != 1:
      raise ConfigError(f'{path}.{name}: not defined for a {tower.loss_type} tower '
                        f'with num_class {tower.num_class} (EasyRec refuses it too)')
  if 'mean_absolute_error' in metric and not (classification or tower.loss_type in L2_TYPES):
    raise ConfigError(f'{path}.mean_absolute_error: not defined for a {tower.loss_type} tower '
                      '(EasyRec refuses it too)')
  _validate_ranking_metric(metric, tower, path)


def _validate_ranking_metric(metric, tower, path):
  """recall_at_topk, max_f1, gauc and session_auc: EasyRec's asserts, and their options."""
  binary = tower.loss_type in AUC_LOSS_TYPES and not (
      tower.loss_type == 'CLASSIFICATION' and tower.num_class > 2)
  for name in ('max_f1', 'gauc', 'session_auc'):
    if name in metric and not binary:
      raise ConfigError(f'{path}.{name}: needs a tower of a binary loss type '
                        '(CLASSIFICATION with num_class 1 or 2, or a ranking loss)')
  for name in ('gauc', 'session_auc'):
    if name in metric:
      _one_of(metric[name].reduction, GROUPED_AUC_REDUCTIONS, f'{path}.{name}.reduction')
  if 'recall_at_topk' in metric:
    if not (tower.loss_type == 'CLASSIFICATION' and tower.num_class > 1):
      raise ConfigError(f'{path}.recall_at_topk: needs a CLASSIFICATION tower with '
                        'num_class > 1')
    if metric.recall_at_topk.topk < 1:
      raise ConfigError(f'{path}.recall_at_topk.topk: {metric.recall_at_topk.topk} must be '
                        '>= 1')


# gauc / session_auc reductions (EasyRec's metrics.py): the weight of each group's AUC.
GROUPED_AUC_REDUCTIONS = ('mean', 'mean_by_sample_num', 'mean_by_positive_num')


def _validate_group_fields(config, section):
  """gauc / session_auc group the eval rows by a raw input column of a CSV input."""
  model = config.model_config
  inputs = [f.input_name for f in config.data_config.input_fields]
  if model.model_class == 'ESMM':
    towers = [('cvr_tower', model.esmm.cvr_tower), ('ctr_tower', model.esmm.ctr_tower)]
  else:
    towers = [(f'task_towers[{i}]', t) for i, t in enumerate(model_params(model).task_towers)]
  for name, tower in towers:
    for m, metric in enumerate(tower.metrics_set):
      for kind, field in GROUP_FIELDS.items():
        if kind not in metric:
          continue
        path = f'model_config.{section}.{name}.metrics_set[{m}].{kind}.{field}'
        _known(metric[kind][field], inputs, path, 'input field')
        if config.data_config.input_type not in ('CSVInput', 'CSVInputV2', 'ParquetInput') or (
            'task_correlation' in config.synthetic and not config.train_input_path):
          raise ConfigError(f'{path}: grouping rows needs CSV or Parquet input (the raw column '
                            'is read from the eval files)')


def _validate_esmm(esmm, groups, label_types):
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
    _validate_tower(tower, f'{path}.{name}', i, label_types,
                    {esmm.cvr_tower.tower_name, esmm.ctr_tower.tower_name})
    if tower.num_class != 1:
      raise ConfigError(f'{path}.{name}.num_class: ESMM towers have one output, got '
                        f'{tower.num_class}')
  if esmm.cvr_tower.loss_type not in ('CLASSIFICATION', 'L2_LOSS'):
    raise ConfigError(f'{path}.cvr_tower.loss_type: ESMM\'s cvr tower is CLASSIFICATION or '
                      f'L2_LOSS, got {esmm.cvr_tower.loss_type}')
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


def _validate_towers(towers, path, label_types):
  """label_types: input_type of each label field, in label_fields order."""
  if not towers:
    raise ConfigError(f'{path}.task_towers: at least one tower is needed')
  _unique([t.tower_name for t in towers], f'{path}.task_towers', 'tower_name')
  for i, tower in enumerate(towers):
    _validate_tower(tower, f'{path}.task_towers[{i}]', i, label_types,
                    {t.tower_name for t in towers})


def _validate_tower(tower, tpath, i, label_types, tower_names):
  """One tower, the i-th of its model (EasyRec gives it label_fields[i] if unset).

  label_types: input_type of each label field, in label_fields order; tower_names: every
  tower of the model (a multi-class tower's outputs must not shadow another's)."""
  label_fields = list(label_types)
  if not tower.label_name:  # EasyRec: towers take label_fields in order
    if i >= len(label_fields):
      raise ConfigError(f'{tpath}.label_name: unset, and data_config.label_fields has no '
                        f'entry {i} to take it from')
    tower.label_name = label_fields[i]
  _known(tower.label_name, label_fields, f'{tpath}.label_name', 'label field')
  if tower.losses:
    tower.loss_type = _head_loss_type(tower, tpath)
  _one_of(tower.loss_type, LOSS_TYPES, f'{tpath}.loss_type')
  if tower.num_class < 1 or (tower.loss_type == 'L2_LOSS' and tower.num_class != 1):
    raise ConfigError(f'{tpath}.num_class: must be >= 1 (and 1 for L2_LOSS)')
  check_num_class(tower.loss_type, tower.num_class, f'{tpath}.num_class')
  if tower.loss_type == 'JRC_LOSS' and not tower.get('losses'):
    raise ConfigError(f'{tpath}.loss_type: JRC_LOSS needs sessions, which a bare loss_type '
                      'cannot name (EasyRec fails too): use losses { loss_type: JRC_LOSS '
                      'jrc_loss { session_name: "<input field>" } }')
  if tower.num_class > 1 and label_types[tower.label_name] not in ('INT32', 'INT64'):
    # EasyRec's sparse softmax cross entropy asserts an integer label dtype.
    raise ConfigError(f'{tpath}.num_class: {tower.num_class} classes need an integer label, '
                      f"but input field '{tower.label_name}' is "
                      f'{label_types[tower.label_name]} (make it INT32 or INT64)')
  if tower.num_class > 1:  # its outputs logits_<t>_1, _y would shadow those of tower <t>_1
    for other in (f'{tower.tower_name}_1', f'{tower.tower_name}_y'):
      if other in tower_names:
        raise ConfigError(f'{tpath}.tower_name: a tower named {other!r} would share output '
                          f'names with this num_class {tower.num_class} tower')
  if not tower.metrics_set:
    metric = ('mean_squared_error' if tower.loss_type in L2_TYPES else
              'auc' if tower.num_class <= 2 else 'accuracy')
    tower.metrics_set = (complete({metric: {}}, EVAL_METRICS),)
  for m, metric in enumerate(tower.metrics_set):
    _validate_metric(metric, tower, f'{tpath}.metrics_set[{m}]')
  _validate_dnn(tower.dnn, f'{tpath}.dnn')


def check_num_class(loss_type, num_class, path):
  """The num_class a loss type's head takes (LOSS_NUM_CLASS); `path`: the num_class field."""
  needed = LOSS_NUM_CLASS.get(loss_type, num_class)
  if num_class != needed:
    raise ConfigError(f'{path}: {loss_type} needs num_class {needed}, got {num_class}')


def _positive(v):
  return v > 0


# Loss parameters -> (test, the values it passes): EasyRec asserts the ohem_ratio and gamma
# limits; a temperature <= 0 divides by zero or reverses the order of the scores.
LOSS_LIMITS = {
    'ohem_ratio': (lambda v: 0 < v <= 1, 'in (0, 1]'),
    'gamma': (_at_least_0, '>= 0'),
    'temperature': (_positive, '> 0'),
}


def _check_loss_param(loss, lpath):
  """The values of a `losses {}` entry's parameters (its own type's, _validate_loss checks):
  LOSS_LIMITS, and jrc_loss's session and strategy."""
  param = LOSS_PARAMS.get(loss.loss_type)
  if param not in loss:
    return
  values, ppath = loss[param], f'{lpath}.{param}'
  for key, (test, allowed) in LOSS_LIMITS.items():
    if key in values and not test(values[key]):
      raise ConfigError(f'{ppath}.{key}: {values[key]} must be {allowed}')
  if loss.loss_type == 'JRC_LOSS':
    if not values.session_name:
      raise ConfigError(f'{ppath}.session_name: JRC_LOSS needs sessions; name an input field')
    if values.loss_weight_strategy == 'uncertainty':
      raise ConfigError(f'{ppath}.loss_weight_strategy: {values.loss_weight_strategy!r} is not '
                        f"implemented in mmoe_jax yet (supported: {', '.join(JRC_STRATEGIES)})")
    _one_of(values.loss_weight_strategy, JRC_STRATEGIES, f'{ppath}.loss_weight_strategy')


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


# Loss types of a `losses {}` entry (config/easyrec.py LOSSES_LOSS_TYPES) -> its loss_param
# oneof member; the others take none.
LOSS_PARAMS = {'PAIR_WISE_LOSS': 'pairwise_loss', 'PAIRWISE_LOGISTIC_LOSS': 'pairwise_logistic_loss',
               'PAIRWISE_FOCAL_LOSS': 'pairwise_focal_loss', 'BINARY_FOCAL_LOSS': 'binary_focal_loss',
               'F1_REWEIGHTED_LOSS': 'f1_reweighted_loss', 'JRC_LOSS': 'jrc_loss'}
LOSSES_LOSS_TYPES = ('CLASSIFICATION', 'L2_LOSS', 'ORDER_CALIBRATE_LOSS', 'SIGMOID_L2_LOSS',
                     *LOSS_PARAMS)
# The loss types with a head of their own (models/mmoe.py `head`): y = o, y = sigmoid(o), and
# JRC's class-1 probs. Every other type's head is CLASSIFICATION's: logits and probs.
OWN_HEADS = ('L2_LOSS', 'SIGMOID_L2_LOSS', 'JRC_LOSS')
LOSS_WEIGHT_STRATEGIES = ('Fixed', 'Uncertainty', 'Random')
SAMPLE_WEIGHT_REDUCTIONS = ('SUM_BY_NONZERO_WEIGHTS', 'WEIGHTED_MEAN')


def _head_loss_type(tower, tpath):
  """The loss_type whose outputs a tower with `losses` gets: EasyRec gives it the union of
  its losses' heads (and ignores loss_type); mmoe_jax gives a tower one head, so its losses
  must agree on it. Losses of CLASSIFICATION's head give CLASSIFICATION if one is, else
  the first's type (their metrics rules differ, mtl.md 8)."""
  heads = {}
  for k, loss in enumerate(tower.losses):
    path = f'{tpath}.losses[{k}].loss_type'
    _one_of(loss.loss_type, LOSSES_LOSS_TYPES, path)
    if loss.loss_type != 'ORDER_CALIBRATE_LOSS':
      head = loss.loss_type if loss.loss_type in OWN_HEADS else 'CLASSIFICATION'
      heads.setdefault(head, (path, loss.loss_type))
  if not heads:
    raise ConfigError(f'{tpath}.losses: ORDER_CALIBRATE_LOSS alone gives the tower no output; '
                      'add the loss that trains it (e.g. CLASSIFICATION)')
  if len(heads) > 1:
    (first, a), (second, b) = list(heads.values())[:2]
    article = 'an' if b[0] in 'AEFILMNORSX' else 'a'  # as the letter is spoken
    raise ConfigError(f'{second}: mixes {article} {b} head with the {a} head of {first}; '
                      'mmoe_jax gives a tower one head')
  head, (_, first_type) = next(iter(heads.items()))
  if head != 'CLASSIFICATION' or any(l.loss_type == 'CLASSIFICATION' for l in tower.losses):
    return head
  return first_type


def _validate_training_signals(config, inputs):
  """Sample weights, task spaces, several losses per tower and their weighting
  (docs/training_signals.md): the fields exist, and what EasyRec ignores silently is an
  error here."""
  data, model = config.data_config, config.model_config
  section = f'model_config.{MODEL_PARAMS[model.model_class]}'
  _one_of(model.loss_weight_strategy, LOSS_WEIGHT_STRATEGIES, 'model_config.loss_weight_strategy')
  _one_of(model.sample_weight_reduction, SAMPLE_WEIGHT_REDUCTIONS,
          'model_config.sample_weight_reduction')
  if data.sample_weight:
    _known(data.sample_weight, inputs, 'data_config.sample_weight', 'input field')
  raw_columns = [('data_config.sample_weight', data.sample_weight)] if data.sample_weight else []
  if model.model_class == 'ESMM':
    _esmm_signals(config)
    return
  towers = model_params(model).task_towers
  names = {t.tower_name: t for t in towers}
  calibrated = None
  min_weights = []
  for i, tower in enumerate(towers):
    tpath = f'{section}.task_towers[{i}]'
    if tower.task_space_indicator_label:
      _known(tower.task_space_indicator_label, data.label_fields,
             f'{tpath}.task_space_indicator_label', 'label field')
    if bool(tower.task_space_indicator_name) != bool(tower.task_space_indicator_value):
      unset = ('task_space_indicator_value' if tower.task_space_indicator_name
               else 'task_space_indicator_name')
      raise ConfigError(f'{tpath}.{unset}: unset, so the other task_space_indicator field has '
                        'no effect (EasyRec needs both); set both or neither')
    if tower.task_space_indicator_name:
      name_path = f'{tpath}.task_space_indicator_name'
      _known(tower.task_space_indicator_name, inputs, name_path, 'input field')
      if inputs[tower.task_space_indicator_name].input_type != 'STRING':
        raise ConfigError(f'{name_path}: input field {tower.task_space_indicator_name!r} is '
                          f'{inputs[tower.task_space_indicator_name].input_type}; EasyRec '
                          'compares it with task_space_indicator_value as a string, so it must '
                          'be STRING')
      raw_columns.append((name_path, tower.task_space_indicator_name))
    if tower.pareto_min_loss_weight < 0:
      raise ConfigError(f'{tpath}.pareto_min_loss_weight: {tower.pareto_min_loss_weight} must '
                        'be >= 0')
    min_weights += [tower.pareto_min_loss_weight] * len(loss_keys_of(tower))
    for k, loss in enumerate(tower.losses):
      lpath = f'{tpath}.losses[{k}]'
      session = _validate_loss(loss, tower, lpath, model, inputs, names)
      if session:
        raw_columns.append(session)
      if loss.loss_type == 'ORDER_CALIBRATE_LOSS':
        if calibrated not in (None, tower.tower_name):
          raise ConfigError(f'{lpath}.loss_type: ORDER_CALIBRATE_LOSS is also on tower '
                            f'{calibrated!r}; both would write the one key '
                            "'order_calibrate_loss' (EasyRec keeps the last)")
        calibrated = tower.tower_name
  if model.use_pareto_loss_weight:
    if model.loss_weight_strategy != 'Fixed':
      raise ConfigError(f'model_config.use_pareto_loss_weight: replaces the loss weights, so '
                        f'loss_weight_strategy must be Fixed, got {model.loss_weight_strategy}')
    if sum(min_weights) >= 1:
      raise ConfigError(f'{section}.task_towers[].pareto_min_loss_weight: the least weights '
                        f'of all losses sum to {sum(min_weights):g}; it must be < 1')
  _raw_columns_readable(config, raw_columns)


def loss_keys_of(tower):
  """The entries a tower adds to the loss dict, as (loss index or None, loss_type): one
  per loss but ORDER_CALIBRATE_LOSS, whose terms make one entry when the tower has
  relation_tower_names (and none without); a tower without `losses`: (None, loss_type)."""
  if not tower.losses:
    return ((None, tower.loss_type),)
  entries = tuple((k, loss.loss_type) for k, loss in enumerate(tower.losses)
                  if loss.loss_type != 'ORDER_CALIBRATE_LOSS')
  calibrate = [k for k, loss in enumerate(tower.losses) if loss.loss_type == 'ORDER_CALIBRATE_LOSS']
  if calibrate and tower.get('relation_tower_names'):
    entries += ((calibrate[0], 'ORDER_CALIBRATE_LOSS'),)
  return entries


def _validate_loss(loss, tower, lpath, model, inputs, towers):
  """One `losses {}` entry; returns (field path, input field) of its session_name, if any."""
  kind = loss.loss_type
  param = LOSS_PARAMS.get(kind)
  given = [name for name in LOSS_PARAMS.values() if name in loss]
  if given and given != [param]:
    raise ConfigError(f'{lpath}.{given[0]}: parameters of another loss type than {kind}')
  if loss.learn_loss_weight:
    if model.loss_weight_strategy != 'Uncertainty':
      raise ConfigError(f'{lpath}.learn_loss_weight: needs model_config.loss_weight_strategy '
                        f'Uncertainty, got {model.loss_weight_strategy} (EasyRec raises too)')
    if kind == 'ORDER_CALIBRATE_LOSS':
      raise ConfigError(f'{lpath}.learn_loss_weight: ORDER_CALIBRATE_LOSS has no learnt weight '
                        '(EasyRec ignores it)')
  classes = 2 if kind == 'JRC_LOSS' else None if kind == 'CLASSIFICATION' else 1
  if classes and tower.num_class != classes:
    raise ConfigError(f'{lpath}.loss_type: {kind} needs num_class {classes}, the tower has '
                      f'{tower.num_class}')
  if kind == 'ORDER_CALIBRATE_LOSS':
    for j, name in enumerate(tower.get('relation_tower_names', ())):
      other = towers.get(name)
      if other is not None and (other.loss_type != 'CLASSIFICATION' or other.num_class != 1):
        raise ConfigError(f'{lpath}.loss_type: ORDER_CALIBRATE_LOSS compares probs with '
                          f'tower {name!r} (relation_tower_names[{j}]), which has no binary '
                          'probs (it needs CLASSIFICATION, num_class 1)')
  if kind == 'JRC_LOSS' and 'jrc_loss' not in loss:
    raise ConfigError(f'{lpath}.jrc_loss: JRC_LOSS needs jrc_loss {{ session_name }} (EasyRec '
                      'fails without it)')
  _check_loss_param(loss, lpath)
  if param and param in loss and loss[param].get('session_name'):
    spath = f'{lpath}.{param}.session_name'
    _known(loss[param].session_name, inputs, spath, 'input field')
    return spath, loss[param].session_name
  return None


def _esmm_signals(config):
  """ESMM has its own losses (EasyRec ignores these fields there): errors."""
  model = config.model_config
  for name in ('cvr_tower', 'ctr_tower'):
    tower = model.esmm[name]
    for field in ('losses', 'task_space_indicator_label', 'task_space_indicator_name',
                  'task_space_indicator_value'):
      if tower[field]:
        raise ConfigError(f'model_config.esmm.{name}.{field}: ESMM computes its own losses and '
                          'ignores this field (EasyRec too); remove it')
  if config.data_config.sample_weight:
    raise ConfigError('data_config.sample_weight: not supported with model_class ESMM (EasyRec '
                      "weighs only ESMM's L2 cvr loss with it)")
  for field, default in (('loss_weight_strategy', 'Fixed'), ('use_pareto_loss_weight', False)):
    if model[field] != default:
      raise ConfigError(f'model_config.{field}: ESMM computes its own losses and ignores this '
                        'field (EasyRec too); remove it')


def _raw_columns_readable(config, raw_columns):
  """Sample weights, task-space fields and session ids are read from the CSV's raw columns
  (data/signals.py): not from a tfds dataset or the generated task_correlation data."""
  if not raw_columns:
    return
  path = raw_columns[0][0]
  if config.data_config.input_type == 'TFDSInput':
    raise ConfigError(f"{path}: not supported with data_config.input_type 'TFDSInput' (it is "
                      'read from the raw CSV columns)')
  if not config.train_input_path and 'task_correlation' in config.synthetic:
    raise ConfigError(f'{path}: the synthetic.task_correlation data has no such column')


# model_class -> the checks of its own model section (every model's towers are checked)
MODEL_CHECKS = {'MMoE': _validate_mmoe, 'PLE': _validate_ple, 'DBMTL': _validate_dbmtl}

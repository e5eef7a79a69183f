"""EasyRec pipeline configs (protobuf text format) read into the config tree.

EasyRec users keep their models in `pipeline.config` files. This module reads them with
protobuf's own text_format against message definitions built at run time from
config/schema.py, so field names and defaults have one home, and returns the same
ConfigDict that a configs/*.py file's get_config returns.

Reading takes two passes over the text:
1. A walk over protobuf's own tokens that collects, for one error, every field the file
   sets that mmoe_jax does not implement: EasyRec fields it knows (each with the reason:
   not implemented, or no meaning here, e.g. ODPS inputs or parameter-server training),
   unknown names (with a suggestion) and enum values beyond the supported ones.
   text_format alone stops at the first unknown field.
2. text_format.Parse, for the values and their types. Unknown fields left at this point
   are the vetted no-ops (e.g. `sync_replicas: true`, which asks for the synchronous
   steps mmoe_jax always takes), which it skips.
"""

import collections
import dataclasses
import functools
import os
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from mmoe_jax.config import schema
from mmoe_jax.config.complete import ConfigError, complete, did_you_mean
from mmoe_jax.config.validate import (INPUT_CLASSES, FEATURE_TYPES, INPUT_TYPES, LOSS_TYPES,
                                      WIDE_DEEP)
from mmoe_jax.config.validate import LOSS_WEIGHT_STRATEGIES, LOSSES_LOSS_TYPES

# pipeline.proto's EasyRecConfig: the config tree, plus FeatureConfigV2 `feature_config
# { features {...} }`, the newer of EasyRec's two feature layouts (both read the same).
FEATURE_CONFIG_V2 = schema.Message('FeatureConfigV2',
                                   features=schema.Repeated(schema.FEATURE_CONFIG))
PIPELINE_FILE = schema.Message('EasyRecConfig', **schema.PIPELINE.fields,
                               feature_config=schema.Optional(FEATURE_CONFIG_V2))

ANY = object()  # Unsupported.accepts: every value is a no-op


@dataclasses.dataclass(frozen=True)
class Unsupported:
  """An EasyRec field mmoe_jax does not implement."""
  reason: str
  accepts: Any = ()  # values that ask for what mmoe_jax does anyway: accepted and dropped


NOT_IMPLEMENTED = 'not implemented in mmoe_jax'


def _no_meaning(what):
  return f'{what}: no meaning in mmoe_jax'


def _fields(reason, *names, accepts=()):
  return {name: Unsupported(reason, accepts) for name in names}


# message name -> EasyRec fields outside schema.py (easy_rec/python/protos/*.proto).
UNSUPPORTED = {
    'EasyRecConfig': {
        **_fields(_no_meaning('Kafka input'), 'kafka_train_input', 'kafka_eval_input'),
        **_fields(_no_meaning('DataHub input'), 'datahub_train_input', 'datahub_eval_input'),
        **_fields(_no_meaning('Hive input'), 'hive_train_input', 'hive_eval_input'),
        **_fields(NOT_IMPLEMENTED, 'binary_train_input', 'binary_eval_input',
                  'parquet_train_input', 'parquet_eval_input'),
        **_fields(_no_meaning('RTP feature generation'), 'fg_json_path'),
    },
    'FeatureConfigV2': _fields(_no_meaning('TF device placement'), 'embedding_on_cpu',
                               accepts=(False,)),
    'TrainConfig': {
        **_fields(NOT_IMPLEMENTED, 'fine_tune_ckpt_var_map', 'freeze_gradient', 'dead_line', 'save_checkpoints_secs'),
        **_fields(NOT_IMPLEMENTED, 'is_profiling', 'force_restore_shape_compatible',
                  'summary_model_vars', accepts=(False,)),
        # true: synchronous replicas, which is every mmoe_jax step; false: asynchronous PS.
        **_fields(_no_meaning('asynchronous parameter-server training'), 'sync_replicas',
                  accepts=(True,)),
        **_fields(_no_meaning('parameter-server training'), 'sparse_accumulator_type',
                  'startup_delay_steps'),
        # mmoe_jax runs on the devices JAX sees (data-parallel via the mesh), no TF strategy.
        **_fields(_no_meaning('TF distribution strategy'), 'train_distribute',
                  accepts=('NoStrategy',)),
        **_fields(_no_meaning('TF distribution strategy'), 'num_gpus_per_worker', accepts=(1,)),
        **_fields(_no_meaning('PAI-TF option'), 'protocol', 'tensor_fuse', 'incr_save_config',
                  'enable_oss_stop_signal', accepts=(False,)),
        **_fields(_no_meaning('TF session threads'), 'inter_op_parallelism_threads',
                  'intra_op_parallelism_threads', accepts=(0,)),
        **_fields(_no_meaning('TF graph dump'), 'write_graph', accepts=ANY),
    },
    'ExportConfig': {
        # The export takes any batch size (a symbolic batch dimension), as EasyRec's -1.
        **_fields(NOT_IMPLEMENTED + ' (the export takes any batch size)', 'batch_size',
                  accepts=(-1,)),
        # TF SavedModel placeholders: the artifact takes the raw columns by input name.
        **_fields(_no_meaning('TF SavedModel placeholders'), 'multi_placeholder',
                  accepts=(True,)),
        **_fields(_no_meaning('TF SavedModel placeholders'), 'placeholder_named_by_input',
                  accepts=(False,)),
        **_fields(_no_meaning('TF SavedModel placeholders'), 'filter_inputs', accepts=(True,)),
        **_fields(NOT_IMPLEMENTED, 'multi_value_fields', 'asset_files'),
    },
    'Optimizer': _fields(NOT_IMPLEMENTED, 'moving_average_decay',
                         'embedding_learning_rate_multiplier'),
    'EvalConfig': {
        # mmoe_jax evaluates inside the training loop, not as a separate polling job.
        **_fields(_no_meaning('separate evaluator job'), 'eval_interval_secs', 'max_evals',
                  'save_graph', accepts=ANY),
        **_fields(NOT_IMPLEMENTED, 'eval_online', accepts=(False,)),
    },
    'EvalMetrics': {
        # EasyRec's rank and multi-task models ignore these silently (only DropoutNet and
        # the match models compute them); mmoe_jax refuses them rather than ignore them.
        **_fields('ignored by EasyRec rank and multi-task models; refused here', 'recall',
                  'precision', 'precision_at_topk'),
    },
    'DatasetConfig': {
        **_fields(NOT_IMPLEMENTED, 'label_sep', 'label_dim', 'extra_label_func',
                  'feature_fields', 'drop_remainder', 'negative_sampler', 'negative_sampler_v2',
                  'hard_negative_sampler', 'hard_negative_sampler_v2',
                  'negative_sampler_in_memory'),
        **_fields(NOT_IMPLEMENTED, 'auto_expand_input_fields', accepts=(False,)),
        **_fields(_no_meaning('distributed input sharding'), 'shard',
                  'chief_redundant', accepts=(False,)),
        # The CSV is parsed once, vectorized, into a columnar cache.
        **_fields(_no_meaning('tf.data parallelism'), 'num_parallel_calls', accepts=ANY),
        **_fields(_no_meaning('ODPS input'), 'selected_cols', 'selected_col_types'),
        **_fields(_no_meaning('RTP input'), 'rtp_separator'),
        **_fields(_no_meaning('PAI worker queue'), 'pai_worker_queue', 'pai_worker_slice_num'),
        **_fields(_no_meaning('TFRecord input'), 'data_compression_type', 'n_data_batch_tfrecord'),
    },
    'Field': {
        **_fields(NOT_IMPLEMENTED, 'input_dim', 'input_shape', accepts=(1,)),
        **_fields(NOT_IMPLEMENTED, 'user_define_fn', 'user_define_fn_path',
                  'user_define_fn_res_type', 'ignore_val'),
    },
    'FeatureConfig': {
        **_fields(NOT_IMPLEMENTED, 'kv_separator', 'seq_multi_sep', 'max_seq_len', 'vocab_file',
                  'shared_names', 'lookup_max_sel_elem_num', 'initializer', 'min_val', 'max_val',
                  'normalizer_fn', 'sequence_combiner', 'sub_feature_type', 'sequence_length',
                  'expression', 'combo_join_sep', 'combo_input_seps'),
        **_fields(NOT_IMPLEMENTED, 'precision', accepts=(-1,)),
        **_fields(_no_meaning('TF partitioned variables'), 'max_partitions', accepts=(1,)),
        **_fields(_no_meaning('PAI-TF embedding variables'), 'ev_params'),
    },
    'FeatureGroupConfig': {
        **_fields(NOT_IMPLEMENTED, 'sequence_features'),
        **_fields(NOT_IMPLEMENTED, 'negative_sampler', accepts=(False,)),
    },
    'EasyRecModel': {
        **_fields(NOT_IMPLEMENTED + ' (models: MMoE, ESMM, PLE, DBMTL, SimpleMultiTask, '
                  'MultiTaskModel)', 'dummy', 'wide_and_deep', 'deepfm', 'multi_tower', 'fm',
                  'dcn', 'autoint', 'dlrm', 'cmbf', 'uniter', 'multi_tower_recall', 'dssm',
                  'mind', 'dropoutnet', 'metric_learning', 'pdn', 'dssm_senet', 'dat',
                  'rocket_launching'),
        **_fields(NOT_IMPLEMENTED, 'seq_att_groups', 'kd', 'restore_filters',
                  'variational_dropout', 'losses', 'label_name'),
        # Multi-task models read loss_type and num_class from their towers.
        **_fields(_no_meaning('single-task setting'), 'loss_type', accepts=('CLASSIFICATION',)),
        **_fields(_no_meaning('single-task setting'), 'num_class', accepts=(1,)),
        **_fields(_no_meaning('PAI-TF embedding variables'), 'ev_params'),
    },
    'ModelParams': _fields(NOT_IMPLEMENTED, 'outputs', 'user_tower_idx_in_output',
                           'item_tower_idx_in_output', 'simi_func', 'temperature', 'scale_simi'),
    'TaskTower': {
        **_fields(NOT_IMPLEMENTED, 'relation_tower_names', 'relation_dnn', 'ait_project_dim'),
        **_fields(NOT_IMPLEMENTED, 'use_ait_module', accepts=(False,)),
    },
    # the loss_param oneof members of the loss types mmoe_jax does not implement
    'Loss': _fields(NOT_IMPLEMENTED, 'softmax_loss', 'circle_loss', 'multi_simi_loss',
                    'pairwise_hinge_loss', 'listwise_rank_loss', 'listwise_distill_loss',
                    'ziln_loss'),
    'DBMTL': {
        **_fields(NOT_IMPLEMENTED, 'bottom_cmbf', 'bottom_uniter', 'sequence_dnn'),
        **_fields(NOT_IMPLEMENTED, 'use_feature_bn', accepts=(False,)),
    },
    'BackboneTower': _fields(NOT_IMPLEMENTED, 'packages'),
    'Block': _fields(NOT_IMPLEMENTED, 'extra_input_fn', 'layers', 'lambda', 'recurrent', 'repeat',
                     'raw_input', 'embedding_layer'),
    'Input': {
        **_fields(NOT_IMPLEMENTED, 'package_name', 'use_package_input', 'input_fn',
                  'reset_input', 'package_input', 'package_input_fn'),
        **_fields(NOT_IMPLEMENTED, 'ignore_input', accepts=(False,)),
    },
    'KerasLayer': _fields(NOT_IMPLEMENTED + ' (layers: MLP, SENet, MMoE)', 'st_params',
                          'periodic_embedding', 'auto_dis_embedding', 'fm', 'mask_block',
                          'masknet', 'bilinear', 'fibinet', 'din', 'bst', 'seq_aug', 'ppnet',
                          'text_cnn', 'highway'),
}

# DBMTL's towers: TaskTower's fields and their support, plus the relation fields it reads.
UNSUPPORTED['BayesTaskTower'] = {k: v for k, v in UNSUPPORTED['TaskTower'].items()
                                 if k not in schema.BAYES_TASK_TOWER.fields}


@dataclasses.dataclass(frozen=True)
class Values:
  """The values mmoe_jax supports for an EasyRec enum field, and why not the others."""
  supported: tuple[str, ...]
  known: dict  # EasyRec value -> reason


def _values(supported, reasons):
  return Values(tuple(supported), {v: r for r, names in reasons.items() for v in names})


# (message name, field) -> Values, for the enum fields (text format: bare identifiers).
ENUMS = {
    ('DatasetConfig', 'input_type'): _values(INPUT_CLASSES, {
        NOT_IMPLEMENTED: ('CSVInputEx', 'TFRecordInput', 'BatchTFRecordInput', 'DummyInput',
                          'ParquetInputV2', 'ParquetInputV3', 'CriteoInput'),
        _no_meaning('ODPS input'): ('OdpsInput', 'OdpsInputV2', 'OdpsInputV3', 'OdpsRTPInput',
                                    'OdpsRTPInputV2'),
        _no_meaning('RTP input'): ('RTPInput', 'RTPInputV2'),
        _no_meaning('DataHub input'): ('DataHubInput',),
        _no_meaning('Kafka input'): ('KafkaInput',),
        _no_meaning('Hive input'): ('HiveInput', 'HiveRTPInput', 'HiveParquetInput')}),
    ('Field', 'input_type'): _values(INPUT_TYPES, {}),
    ('FeatureConfig', 'feature_type'): _values(FEATURE_TYPES, {
        NOT_IMPLEMENTED: ('ComboFeature', 'LookupFeature', 'SequenceFeature', 'ExprFeature',
                          'PassThroughFeature')}),
    ('FeatureGroupConfig', 'wide_deep'): _values(WIDE_DEEP, {
        NOT_IMPLEMENTED + ' (no wide part)': ('WIDE', 'WIDE_AND_DEEP')}),
    ('TaskTower', 'loss_type'): _values(LOSS_TYPES, {
        NOT_IMPLEMENTED: ('CROSS_ENTROPY_LOSS', 'SOFTMAX_CROSS_ENTROPY',
                          'CIRCLE_LOSS', 'MULTI_SIMILARITY_LOSS',
                          'SOFTMAX_CROSS_ENTROPY_WITH_NEGATIVE_MINING',
                          'PAIRWISE_HINGE_LOSS',
                          'ORDER_CALIBRATE_LOSS', 'BINARY_CROSS_ENTROPY_LOSS',
                          'KL_DIVERGENCE_LOSS', 'LISTWISE_RANK_LOSS', 'LISTWISE_DISTILL_LOSS',
                          'ZILN_LOSS')}),
}
ENUMS['BayesTaskTower', 'loss_type'] = ENUMS['TaskTower', 'loss_type']
# The types a `losses {}` entry may name (validate checks the rest)
ENUMS['Loss', 'loss_type'] = _values(LOSSES_LOSS_TYPES, {
    NOT_IMPLEMENTED: tuple(v for v in ENUMS['TaskTower', 'loss_type'].known
                           if v not in LOSSES_LOSS_TYPES)})
ENUMS['EasyRecModel', 'loss_weight_strategy'] = _values(LOSS_WEIGHT_STRATEGIES, {})

_MESSAGE = object()  # a message value, as _skip reports it


def load_pipeline(path):
  """An EasyRec pipeline config file -> the completed ConfigDict (as configs/*.py give)."""
  return complete(read_pipeline(path)[0])


def read_pipeline(path):
  """Reads an EasyRec pipeline config file.

  Returns:
    (raw, dropped): raw is a dict of the fields the file sets, in the config tree's
    layout; dropped lists 'path = value' of the no-op fields it accepted and dropped.

  Raises:
    ConfigError: every unsupported field path in one message, or a syntax or type
      error (with the file's line and column).
  """
  if not os.path.isfile(path):
    raise ConfigError(f'{path}: config file not found')
  with open(path) as f:
    text = f.read()
  problems, dropped = {}, []
  try:
    _walk(text_format.Tokenizer(text.splitlines()), PIPELINE_FILE, '', '', problems, dropped)
    if not problems:
      message = _pipeline_class()()
      text_format.Parse(text, message, allow_unknown_field=True)  # the unknown: vetted no-ops
  except text_format.ParseError as e:
    raise ConfigError(f'{path}:{e}') from None
  if problems:
    lines = '\n'.join(f'  {p}: {why}' for p, why in problems.items())
    raise ConfigError(f'{path}: mmoe_jax does not support these {len(problems)} fields or '
                      f'values (remove or change them):\n{lines}')
  raw = _to_dict(message)
  features = raw.pop('feature_config', {}).get('features', ())
  if features:
    if raw.get('feature_configs'):
      raise ConfigError(f'{path}: set feature_config {{ features {{...}} }} or feature_configs '
                        '{...}, not both')
    raw['feature_configs'] = features
  return {k: raw[k] for k in schema.PIPELINE.fields if k in raw}, dropped


def to_python(path):
  """An EasyRec pipeline config file as the source of an equivalent configs/*.py file.

  The file sets the fields the pipeline config sets (complete() fills in the rest, as
  for the .config itself), in the config tree's layout, and notes the no-op fields
  it dropped.
  """
  raw, dropped = read_pipeline(path)
  name = os.path.basename(path)
  notes = ''.join(f'\n  {d}' for d in dropped)
  if notes:
    notes = f'\n\nDropped, as no-ops (they ask for what mmoe_jax does anyway):{notes}'
  return (f'r"""Converted from the EasyRec pipeline config {name}\n'
          f'by scripts/convert_easyrec_config.py.{notes}\n\n'
          f'  python scripts/train.py --config=<this file>\n"""\n\n'
          'from mmoe_jax.config import complete, parse_arg\n\n\n'
          'def get_config(arg=None):\n'
          '  parse_arg(arg)  # no variants: rejects any :arg\n'
          f'  config = {_python(raw, 2)}\n'
          '  return complete(config)\n')


def _python(value, indent, prefix=0, width=100):
  """`value` (dicts, tuples, scalars) as Python source starting at column indent + prefix:
  one line if it fits, else one item (or, for scalars, one filled line) per line, indented
  as in configs/*.py."""
  if not isinstance(value, (dict, tuple)):
    return repr(value)
  inner = indent + 4
  if isinstance(value, dict):
    items, start = [f'{k}={_python(v, inner, len(k) + 1)}' for k, v in value.items()], 'dict('
  else:
    items, start = [_python(v, inner) for v in value], '('
  line = start + ', '.join(items) + (',)' if len(items) == 1 and start == '(' else ')')
  if indent + prefix + len(line) + 1 <= width and '\n' not in line:  # + 1: the comma
    return line
  if start == '(' and not any(isinstance(v, (dict, tuple)) for v in value):
    rows = [[]]
    for item in items:  # fill lines, as a person writes a long list of names
      if rows[-1] and inner + len(', '.join(rows[-1] + [item])) + 1 > width:
        rows.append([])
      rows[-1].append(item)
    items = [', '.join(row) for row in rows]
  pad = ' ' * inner
  return start + '\n' + ''.join(f'{pad}{item},\n' for item in items) + ' ' * indent + ')'


def _walk(tok, message, path, close, problems, dropped):
  """Walks the fields of one message (`message` None: skips them) up to `close` ('' = end)."""
  index = collections.Counter()
  while not (tok.TryConsume(close) if close else tok.AtEnd()):
    name = tok.ConsumeIdentifier()
    field = f'{path}.{name}' if path else name
    spec = message.fields.get(name) if message else None
    tok.TryConsume(':')
    if spec is None:
      values = _skip(tok)
      if message:
        _unsupported(message, name, field, values, problems, dropped)
    else:
      item = spec.item if isinstance(spec, schema.Repeated) else spec
      item = item.message if isinstance(item, schema.Optional) else item
      for _ in _each_value(tok):
        if isinstance(item, schema.Message):
          sub = f'{field}[{index[name]}]' if isinstance(spec, schema.Repeated) else field
          index[name] += 1
          _walk(tok, item, sub, _open(tok), problems, dropped)
        elif (message.name, name) in ENUMS:
          _check_enum(ENUMS[message.name, name], field, _scalar(tok), problems)
        else:
          _scalar(tok)  # typed by text_format in the second pass
    tok.TryConsume(',') or tok.TryConsume(';')


def _unsupported(message, name, field, values, problems, dropped):
  known = UNSUPPORTED.get(message.name, {}).get(name)
  shown = field if _MESSAGE in values else f'{field} = {", ".join(map(_show, values))}'
  if known is None:
    problems[field] = f'unknown field of {message.name}{did_you_mean(name, message.fields)}'
  elif known.accepts is ANY or (_MESSAGE not in values and
                                all(v in known.accepts for v in values)):
    dropped.append(shown)
  else:
    problems[shown] = known.reason


def _check_enum(values, field, value, problems):
  if value in values.supported:
    return
  if isinstance(value, str) and value in values.known:
    problems[f'{field} = {value}'] = values.known[value]
  else:
    problems[f'{field} = {_show(value)}'] = (
        f'not a value mmoe_jax knows; supported: {", ".join(values.supported)}')


def _each_value(tok):
  """Yields once per value of a field, `v` or each item of `[v, ...]`; the caller consumes it."""
  if not tok.TryConsume('['):
    yield
    return
  if tok.TryConsume(']'):
    return
  while True:
    yield
    if tok.TryConsume(']'):
      return
    tok.Consume(',')


def _open(tok):
  """Consumes the start of a message, `{` or `<`; returns its end."""
  if tok.TryConsume('<'):
    return '>'
  tok.Consume('{')
  return '}'


def _skip(tok):
  """Consumes a value of a field outside the schema; returns its scalars (_MESSAGE for messages)."""
  values = []
  for _ in _each_value(tok):
    if tok.LookingAt('{') or tok.LookingAt('<'):
      _walk(tok, None, '', _open(tok), None, None)
      values.append(_MESSAGE)
    else:
      values.append(_scalar(tok))
  return values


def _scalar(tok):
  """Consumes one scalar token: a str for a quoted string or an enum name, else a number/bool."""
  if tok.token[:1] in ('"', "'"):
    return tok.ConsumeString()
  text = tok.token
  tok.NextToken()
  if text in ('true', 'True', 't'):
    return True
  if text in ('false', 'False', 'f'):
    return False
  for kind in (int, float):
    try:
      return kind(text.rstrip('fF') if kind is float else text)
    except ValueError:
      pass
  return text


def _show(value):
  return repr(value) if isinstance(value, str) and not value.isidentifier() else str(value)


def _to_dict(message):
  """The fields a parsed message sets (ListFields), enums by name, repeated as tuples."""
  out = {}
  for field, value in message.ListFields():
    if field.type == field.TYPE_MESSAGE:
      convert = _to_dict
    elif field.type == field.TYPE_ENUM:
      convert = lambda v, field=field: field.enum_type.values_by_number[v].name
    else:
      convert = lambda v: v
    out[field.name] = tuple(map(convert, value)) if field.is_repeated else convert(value)
  return out


_SCALAR_TYPES = {
    bool: descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    int: descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    # double, not EasyRec's float: 1e-06 reads back as 1e-06, as in a .py config
    float: descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    str: descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}
_PACKAGE = 'mmoe_jax.easyrec'


@functools.cache
def _pipeline_class():
  pool = descriptor_pool.DescriptorPool()
  pool.Add(_file_descriptor())
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName(f'{_PACKAGE}.{PIPELINE_FILE.name}'))


def _file_descriptor():
  """proto2 definitions of PIPELINE_FILE and every message under it, from schema.py."""
  fdp = descriptor_pb2.FileDescriptorProto(name='mmoe_jax/easyrec.proto', package=_PACKAGE,
                                           syntax='proto2')
  added = {}
  field_proto = descriptor_pb2.FieldDescriptorProto

  def add(message):
    if message.name in added:
      assert added[message.name] is message, f'two schema messages named {message.name}'
      return
    added[message.name] = message
    proto = fdp.message_type.add(name=message.name)
    for number, (name, spec) in enumerate(message.fields.items(), start=1):
      field = proto.field.add(name=name, number=number, label=field_proto.LABEL_OPTIONAL)
      if isinstance(spec, schema.Repeated):
        field.label, spec = field_proto.LABEL_REPEATED, spec.item
      if isinstance(spec, schema.Optional):
        spec = spec.message
      if isinstance(spec, schema.Message):
        add(spec)
        field.type, field.type_name = field_proto.TYPE_MESSAGE, f'.{_PACKAGE}.{spec.name}'
      elif (message.name, name) in ENUMS:
        enum = proto.enum_type.add(name=f'{name}_values')
        for i, value in enumerate(ENUMS[message.name, name].supported):
          enum.value.add(name=value, number=i)
        field.type = field_proto.TYPE_ENUM
        field.type_name = f'.{_PACKAGE}.{message.name}.{enum.name}'
      else:
        kind = (spec if isinstance(spec, type) else
                spec.kind if isinstance(spec, schema.Required) else type(spec))
        field.type = _SCALAR_TYPES[kind]

  add(PIPELINE_FILE)
  return fdp


def to_text(config):
  """A complete config in EasyRec's text form (the pipeline.config a run records).

  Every field is written, defaults included, so the file says what the run used. It
  holds mmoe_jax's own fields as well (those marked `not in EasyRec` in schema.py: seed,
  synthetic, sharding, ...), so that load_config reads it back equal; EasyRec itself
  rejects those. One thing the text form cannot say: a repeated field left empty where
  its default is not (a sharding rule set to ()) is not written, so it reads back as its
  default; config.json, beside it, holds the exact value.
  """
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  message = json_format.ParseDict(_plain(config), _pipeline_class()())
  return ('# The resolved config of an mmoe_jax run (EasyRec text format; seed, synthetic, '
          'sharding\n# and fields marked `not in EasyRec` in mmoe_jax/config/schema.py are '
          "mmoe_jax's own).\n" + text_format.MessageToString(message))


def _plain(value):
  """A ConfigDict as dicts, lists and scalars (json_format's input)."""
  if isinstance(value, dict) or hasattr(value, 'items'):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value

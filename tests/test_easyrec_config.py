"""EasyRec pipeline configs (protobuf text format): reading, EasyRec's rules, errors, conversion."""

import glob
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
from absl import flags

import test_defaults
from conftest import EASYREC_CONFIGS
from mmoe_jax import cli
from mmoe_jax.builder import build_model
from mmoe_jax.config import ConfigError, easyrec, load_config, model_params, schema, validate
from mmoe_jax.data import synthetic
from mmoe_jax.training import train_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = sorted(glob.glob(os.path.join(EASYREC_CONFIGS, '*.config')))

# A small pipeline; the tests replace FEATURES, EXPERTS, TOWERS, or add fields to train_config
# (TRAIN), data_config (DATA), model_config (MODEL) or the top level (EXTRA); INPUT_TYPE is
# data_config.input_type.
BASE = """
# two labels, two features, the built-in MMoE
model_dir: "experiments/small"
train_config {
  optimizer_config { adam_optimizer { learning_rate { constant_learning_rate {} } } }
  num_steps: 10
  TRAIN
}
data_config {
  input_fields { input_name: "clk" input_type: INT32 }
  input_fields { input_name: "buy" input_type: INT32 }
  input_fields { input_name: "user" input_type: STRING }
  input_fields { input_name: "item" input_type: STRING }
  label_fields: ["clk", "buy"]
  batch_size: 8
  input_type: INPUT_TYPE
  DATA
}
FEATURES
model_config {
  model_class: "MMoE"
  feature_groups { group_name: "all" feature_names: ["user", "item"] }
  mmoe {
    EXPERTS
    TOWERS
  }
  MODEL
}
EXTRA
"""
FEATURES = """
feature_configs { input_names: "user" feature_type: IdFeature embedding_dim: 4
                  hash_bucket_size: 100 }
feature_configs { input_names: "item" feature_type: IdFeature embedding_dim: 4 num_buckets: 50 }
"""
EXPERTS = 'expert_dnn { hidden_units: [8, 4] } num_expert: 2'
TOWERS = """
task_towers { tower_name: "ctr" label_name: "clk" dnn { hidden_units: [4] } }
task_towers { tower_name: "cvr" label_name: "buy" dnn { hidden_units: [4] } }
"""


def pipeline(tmp_path, name='pipeline.config', **parts):
  """Writes BASE with its parts replaced (FEATURES=..., EXTRA=...) and returns the path."""
  text = BASE
  defaults = dict(FEATURES=FEATURES, EXPERTS=EXPERTS, TOWERS=TOWERS, TRAIN='', DATA='', MODEL='',
                  EXTRA='', INPUT_TYPE='CSVInput')
  for key, default in defaults.items():
    text = text.replace(key, parts.get(key, default))
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def unsupported(path):
  with pytest.raises(ConfigError) as e:
    load_config(path)
  return str(e.value)


def test_shared_configs_are_there():
  assert [os.path.basename(p) for p in SHARED] == ['mmoe_backbone_taobao.config',
                                                    'mmoe_taobao.config']


@pytest.mark.parametrize('path', SHARED, ids=os.path.basename)
def test_shared_configs_load_and_validate(path):
  c = validate(load_config(path))
  towers = model_params(c.model_config).task_towers
  assert [(t.tower_name, t.label_name) for t in towers] == [('ctr', 'clk'), ('cvr', 'buy')]
  assert c.data_config.batch_size == 4096 and len(c.data_config.input_fields) == 20
  assert c.feature_configs[-1].num_buckets == 50 and c.feature_configs[-2].separator == '|'
  assert c.model_config.embedding_regularization == 5e-5
  lr = c.train_config.optimizer_config.adam_optimizer.learning_rate
  assert lr.exponential_decay_learning_rate.min_learning_rate == 1e-7
  assert lr.exponential_decay_learning_rate.staircase  # EasyRec's default, unset in the file
  if c.model_config.model_class == 'MMoE':
    m = c.model_config.mmoe
    assert m.expert_dnn.hidden_units == (256, 192, 128, 64) and m.num_expert == 4
    assert m.expert_dnn.use_bn  # EasyRec's DNN default (configs/mmoe.py turns it off)
    assert c.train_config.num_steps == 5000
  else:
    assert [b.name for b in c.model_config.backbone.blocks] == ['all', 'senet', 'mmoe']
    assert c.model_config.backbone.blocks[2].keras_layer.mmoe.num_expert == 3
    assert c.train_config.num_steps == 200


@pytest.mark.parametrize('path', SHARED, ids=os.path.basename)
def test_converted_file_loads_as_the_same_config(path, tmp_path):
  converted = tmp_path / 'mine.py'
  converted.write_text(easyrec.to_python(path))
  assert load_config(str(converted)).to_dict() == load_config(path).to_dict()
  assert validate(load_config(str(converted))).to_dict() == validate(load_config(path)).to_dict()


def test_convert_script_writes_a_config_file(tmp_path):
  path = pipeline(tmp_path, EXPERTS="""
      experts { expert_name: "a" dnn { hidden_units: [8, 4] } }
      experts { expert_name: "b" dnn { hidden_units: [4] } }""",
                  FEATURES='feature_config { features { input_names: "user" embedding_dim: 4 '
                  'hash_bucket_size: 9 } features { input_names: "item" embedding_dim: 4 '
                  'vocab_list: ["x", "y"] } }',
                  TRAIN='sync_replicas: true')
  out = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'convert_easyrec_config.py'),
                        path], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
  assert out.returncode == 0, out.stderr[-2000:]
  converted = tmp_path / 'mine.py'
  converted.write_text(out.stdout)
  assert 'def get_config(arg=None):' in out.stdout
  assert 'train_config.sync_replicas = True' in out.stdout  # noted as dropped
  assert load_config(str(converted)).to_dict() == load_config(path).to_dict()
  with pytest.raises(ConfigError, match='unknown'):
    load_config(f'{converted}:tiny')  # no variants


def test_text_format_forms(tmp_path):
  # Comments, both repeated forms, both quotes with escapes, ':' before '{' or not, '<>'
  # delimiters, ';' and ',' separators, enums as bare names.
  path = pipeline(tmp_path, TOWERS="""
      task_towers: {  # with ':'
        tower_name: 'ctr'; label_name: "clk",
        dnn < hidden_units: 6 hidden_units: 4 dropout_ratio: [0.5] activation: "tf.nn.relu" >
        loss_type: CLASSIFICATION
        metrics_set: [{auc {}}, {auc {num_thresholds: 1000}}]
      }
      task_towers {
        tower_name: "c\\"v\\x72"  # escapes: c"vr
        label_name: 'b' "uy"      # adjacent strings are concatenated
        dnn { hidden_units: [] }
        weight: 2
      }""")
  c = validate(load_config(path))
  ctr, cvr = c.model_config.mmoe.task_towers
  assert ctr.dnn.hidden_units == (6, 4) and ctr.dnn.dropout_ratio == (0.5,)
  assert ctr.dnn.activation == 'relu' and len(ctr.metrics_set) == 2
  assert ctr.metrics_set[1].auc.num_thresholds == 1000
  assert cvr.tower_name == 'c"vr' and cvr.label_name == 'buy' and cvr.weight == 2.0
  assert cvr.dnn.hidden_units == ()
  assert c.model_config.feature_groups[0].feature_names == ('user', 'item')
  assert c.data_config.input_fields[0].input_type == 'INT32'


def test_both_feature_layouts_read_the_same(tmp_path):
  v2 = FEATURES.replace('feature_configs {', 'features {')
  nested = pipeline(tmp_path, 'nested.config', FEATURES=f'feature_config {{ {v2} }}')
  assert load_config(nested).to_dict() == load_config(pipeline(tmp_path)).to_dict()
  both = pipeline(tmp_path, 'both.config', FEATURES=f'feature_config {{ {v2} }}\n{FEATURES}')
  with pytest.raises(ConfigError, match=r'set feature_config \{ features \{...\} \} or '
                     'feature_configs'):
    load_config(both)


def test_towers_take_label_fields_in_order_without_label_name(tmp_path):
  path = pipeline(tmp_path,
                  TOWERS='task_towers { tower_name: "a" } task_towers { tower_name: "b" }')
  towers = validate(load_config(path)).model_config.mmoe.task_towers
  assert [t.label_name for t in towers] == ['clk', 'buy']
  three = pipeline(tmp_path, 'three.config', TOWERS='task_towers { tower_name: "a" } '
                   'task_towers { tower_name: "b" } task_towers { tower_name: "c" }')
  with pytest.raises(ConfigError, match=r'task_towers\[2\]\.label_name: unset, and '
                     r'data_config\.label_fields has no entry 2'):
    validate(load_config(three))


def test_deprecated_experts_of_different_shapes(tmp_path):
  path = pipeline(tmp_path, EXPERTS="""
      experts { expert_name: "e1" dnn { hidden_units: [16, 8] use_bn: false } }
      experts { expert_name: "e2" dnn { hidden_units: [8] } }
      experts { expert_name: "e3" dnn { hidden_units: [32, 12, 8] } }""")
  c = validate(load_config(path))
  assert [e.expert_name for e in c.model_config.mmoe.experts] == ['e1', 'e2', 'e3']
  model = build_model(c)
  assert model.num_expert == 3 and model.experts[2][1].hidden_units == (32, 12, 8)
  features = {'user': np.array([1, 2]), 'item': np.array([3, 4])}
  variables = nn.meta.unbox(model.init(jax.random.PRNGKey(0), features))
  experts = variables['params']['experts']
  assert experts['e3']['dnn_2']['kernel'].shape == (12, 8)
  assert 'bn_0' not in experts['e1'] and 'bn_0' in experts['e2']
  assert variables['params']['gate_ctr']['kernel'].shape == (8, 3)


@pytest.mark.parametrize('experts, match', [
    ('experts { expert_name: "a" dnn { hidden_units: [8, 4] } } '
     'experts { expert_name: "b" dnn { hidden_units: [6] } }',
     r"model_config\.mmoe\.experts: the gates mix .* last hidden_units must agree; "
     r"got \{'a': 4, 'b': 6\}"),
    ('expert_dnn { hidden_units: [4] } experts { expert_name: "a" dnn { hidden_units: [4] } }',
     r'model_config\.mmoe: set expert_dnn \(with num_expert\) or the deprecated experts list'),
    ('num_expert: 3 experts { expert_name: "a" dnn { hidden_units: [4] } }',
     r'model_config\.mmoe\.num_expert: 3, but the experts list has 1'),
    ('experts { expert_name: "a" dnn { hidden_units: [4] } } '
     'experts { expert_name: "a" dnn { hidden_units: [4] } }',
     r"model_config\.mmoe\.experts\[1\]\.expert_name: 'a' is repeated"),
])
def test_deprecated_experts_errors(tmp_path, experts, match):
  with pytest.raises(ConfigError, match=match):
    validate(load_config(pipeline(tmp_path, EXPERTS=experts)))


@pytest.mark.parametrize('vocab, ok', [
    ('hash_bucket_size: 10', True), ('num_buckets: 10', True), ('vocab_list: ["a", "b"]', True),
    ('', False), ('hash_bucket_size: 10 num_buckets: 10', False),
    ('num_buckets: 10 vocab_list: "a"', False)])
def test_exactly_one_vocabulary_per_feature(tmp_path, vocab, ok):
  features = FEATURES.replace('num_buckets: 50', vocab)
  config = load_config(pipeline(tmp_path, FEATURES=features))
  if ok:
    validate(config)
  else:
    with pytest.raises(ConfigError, match=r'feature_configs\[1\] \(item\): set exactly one of '
                       'hash_bucket_size, num_buckets, vocab_list'):
      validate(config)


def test_every_unsupported_field_is_listed_in_one_error(tmp_path):
  features = (FEATURES.replace('num_buckets: 50', 'vocab_file: "v.txt" num_buckets: 50')
              .replace('"user" feature_type: IdFeature', '"user" feature_type: SequenceFeature'))
  path = pipeline(
      tmp_path, FEATURES=features,
      EXTRA='kafka_train_input { server: "host:9092" topic: "clicks" }',
      TRAIN='sync_replicas: false train_distribute: PSStrategy fine_tune_ckpt_var_map: "x"',
      INPUT_TYPE='OdpsInputV2', MODEL='losses { loss_type: CLASSIFICATION }',
      EXPERTS='experts { expert_name: "e" dnn { hidden_units: [4] foo: 3 } }',
      TOWERS="""task_towers { tower_name: "ctr" loss_type: PAIRWISE_HINGE_LOSS
                  losses { loss_type: ZILN_LOSS } metrics_set { precision {} } }""")
  message = unsupported(path)
  expected = [
      'kafka_train_input: Kafka input: no meaning in mmoe_jax',
      'data_config.input_type = OdpsInputV2: ODPS input: no meaning in mmoe_jax',
      'feature_configs[0].feature_type = SequenceFeature: not implemented',
      "feature_configs[1].vocab_file = 'v.txt': not implemented",
      'model_config.mmoe.experts[0].dnn.foo: unknown field of DNN',
      'model_config.mmoe.task_towers[0].loss_type = PAIRWISE_HINGE_LOSS: not implemented',
      'model_config.mmoe.task_towers[0].losses[0].loss_type = ZILN_LOSS: not implemented',
      'model_config.mmoe.task_towers[0].metrics_set[0].precision: ignored by EasyRec rank',
      'model_config.losses: not implemented',
      'train_config.sync_replicas = False: asynchronous parameter-server training: no meaning',
      'train_config.train_distribute = PSStrategy: TF distribution strategy: no meaning',
      'train_config.fine_tune_ckpt_var_map = x: not implemented',
  ]
  for line in expected:
    assert line in message
  assert f'these {len(expected)} fields or values' in message
  assert message.startswith(f'{path}: ')


def test_unknown_field_gets_a_suggestion(tmp_path):
  path = pipeline(tmp_path, EXPERTS='expert_dnn { hiden_units: [4] } num_expert: 2')
  assert ("model_config.mmoe.expert_dnn.hiden_units: unknown field of DNN (did you mean "
          "'hidden_units'?)") in unsupported(path)


def test_unknown_enum_value_lists_the_supported_ones(tmp_path):
  path = pipeline(tmp_path, TOWERS='task_towers { tower_name: "ctr" loss_type: CLASIFICATION }')
  assert ('task_towers[0].loss_type = CLASIFICATION: not a value mmoe_jax knows; supported: '
          'CLASSIFICATION, L2_LOSS') in unsupported(path)


def test_no_op_fields_are_accepted_and_noted(tmp_path):
  path = pipeline(tmp_path, TRAIN='sync_replicas: true train_distribute: NoStrategy',
                  DATA='num_parallel_calls: 4')
  assert load_config(path).to_dict() == load_config(pipeline(tmp_path, 'plain.config')).to_dict()
  source = easyrec.to_python(path)
  assert 'train_config.sync_replicas = True' in source
  assert 'data_config.num_parallel_calls = 4' in source


def test_syntax_and_type_errors_name_file_and_line(tmp_path):
  path = pipeline(tmp_path, TRAIN='save_checkpoints_steps: "ten"')
  with pytest.raises(ConfigError, match=rf'{path}:\d+:\d+ : .*save_checkpoints_steps'):
    load_config(path)
  path = pipeline(tmp_path, 'open.config', EXTRA='eval_config {')
  with pytest.raises(ConfigError, match=rf'{path}:\d+:\d+'):
    load_config(path)
  with pytest.raises(ConfigError, match='takes no :arg'):
    load_config(f'{path}:tiny')
  with pytest.raises(ConfigError, match='missing.config: config file not found'):
    load_config(str(tmp_path / 'missing.config'))


def test_command_line_overrides_work_on_config_files():
  argv = ['prog', f'--config={SHARED[-1]}', '--config.train_config.num_steps=7',
          '--config.model_config.mmoe.task_towers[1].weight=2',
          '--config.model_config.mmoe.expert_dnn.hidden_units=(8,4)']
  fv = flags.FlagValues()
  holder = cli.define_config_flag(fv, sys_argv=argv)
  fv(argv)
  c = validate(holder.value)
  assert c.train_config.num_steps == 7 and c.model_config.mmoe.task_towers[1].weight == 2.0
  assert c.model_config.mmoe.expert_dnn.hidden_units == (8, 4)


def test_tables_match_the_schema():
  messages = test_defaults.messages()
  for name, fields in easyrec.UNSUPPORTED.items():
    assert name in messages, name
    assert not set(fields) & set(messages[name].fields), name  # not both supported and not
  for (name, field), values in easyrec.ENUMS.items():
    spec = messages[name].fields[field]  # a default, or required (Loss.loss_type)
    assert (isinstance(spec, str) or spec == schema.REQUIRED) and not set(values.known) & set(
        values.supported)


def test_shared_config_trains_end_to_end(tmp_path):
  """The built-in MMoE's .config, unchanged, trains on generated data of its schema; only
  paths and sizes are overridden, as --config.* flags would (see the overrides test)."""
  train, test = str(tmp_path / 'train.csv'), str(tmp_path / 'test.csv')
  synthetic.write_csv(train, 1000, seed=0, split='train')
  synthetic.write_csv(test, 300, seed=0, split='eval')
  config = load_config(os.path.join(EASYREC_CONFIGS, 'mmoe_taobao.config'))
  config.train_input_path, config.eval_input_path = train, test
  config.model_dir = str(tmp_path / 'model')
  config.train_config.update(num_steps=6, save_checkpoints_steps=6)
  config.data_config.batch_size = 64
  mmoe = config.model_config.mmoe
  mmoe.expert_dnn.hidden_units = (16, 8)
  for tower in mmoe.task_towers:
    tower.dnn.hidden_units = (8,)
  for feature in config.feature_configs:
    feature.hash_bucket_size = min(feature.hash_bucket_size, 1000)
  final = train_lib.train_and_evaluate(config)
  assert final['step'] == 6
  assert 0 < final['auc_ctr'] < 1 and 0 < final['auc_cvr'] < 1


def test_lazy_adam_optimizer_is_read(tmp_path):
  path = pipeline(tmp_path, TRAIN='')
  text = open(path).read().replace('adam_optimizer { learning_rate',
                                   'lazy_adam_optimizer { beta2: 0.99 learning_rate')
  (tmp_path / 'lazy.config').write_text(text)
  config = validate(load_config(str(tmp_path / 'lazy.config')))
  assert 'lazy_adam_optimizer' in config.train_config.optimizer_config
  assert config.train_config.optimizer_config.lazy_adam_optimizer.beta2 == 0.99


# One text config per optimizer and schedule EasyRec has beyond Adam with a constant rate,
# with non-default values, as an EasyRec user writes them.
OPTIMIZER_TEXTS = {
    'rms_prop': 'rms_prop_optimizer { learning_rate { manual_step_learning_rate { '
                'initial_learning_rate: 0.01 schedule { step: 100 learning_rate: 0.005 } '
                'schedule { step: 200 learning_rate: 0.001 } warmup: true } } '
                'momentum_optimizer_value: 0.5 decay: 0.95 epsilon: 0.001 }',
    'momentum': 'momentum_optimizer { learning_rate { cosine_decay_learning_rate { '
                'learning_rate_base: 0.1 total_steps: 1000 warmup_learning_rate: 0.01 '
                'warmup_steps: 100 hold_base_rate_steps: 50 } } momentum_optimizer_value: 0.8 }',
    'momentumw': 'momentumw_optimizer { learning_rate { poly_decay_learning_rate { '
                 'learning_rate_base: 0.1 total_steps: 500 power: 2.0 end_learning_rate: 0.001 '
                 '} } weight_decay: 1e-5 momentum_optimizer_value: 0.7 }',
    'adamw': 'adamw_optimizer { learning_rate { transformer_learning_rate { '
             'learning_rate_base: 2.0 hidden_size: 64 warmup_steps: 400 step_scaling_rate: 0.5 '
             '} } weight_decay: 1e-4 beta1: 0.8 beta2: 0.99 }',
    'adagrad': 'adagrad_optimizer { learning_rate { exponential_decay_learning_rate { '
               'initial_learning_rate: 0.01 decay_steps: 100 decay_factor: 0.9 '
               'burnin_steps: 10 } } initial_accumulator_value: 0.2 }',
    'ftrl': 'ftrl_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.05 } } '
            'learning_rate_power: -0.6 initial_accumulator_value: 0.3 l1_reg: 0.1 l2_reg: 0.2 '
            'l2_shrinkage_reg: 0.01 }',
    'adam_async': 'adam_async_optimizer { learning_rate { constant_learning_rate {} } '
                  'beta1: 0.85 }',
    'adam_asyncw': 'adam_asyncw_optimizer { learning_rate { constant_learning_rate {} } '
                   'weight_decay: 1e-3 }',
}


@pytest.mark.parametrize('name', list(OPTIMIZER_TEXTS))
def test_every_optimizer_and_schedule_reads_and_converts(tmp_path, name):
  path = pipeline(tmp_path)
  text = open(path).read().replace(
      'optimizer_config { adam_optimizer { learning_rate { constant_learning_rate {} } } }',
      f'optimizer_config {{ {OPTIMIZER_TEXTS[name]} }}')
  (tmp_path / 'opt.config').write_text(text)
  config = load_config(str(tmp_path / 'opt.config'))
  optimizer = config.train_config.optimizer_config[f'{name}_optimizer']
  written = {k: v for k, v in easyrec.read_pipeline(str(tmp_path / 'opt.config'))[0][
      'train_config']['optimizer_config'][f'{name}_optimizer'].items() if k != 'learning_rate'}
  assert written and all(optimizer[k] == v for k, v in written.items())  # values as written
  converted = tmp_path / 'mine.py'
  converted.write_text(easyrec.to_python(str(tmp_path / 'opt.config')))
  assert load_config(str(converted)).to_dict() == config.to_dict()
  assert validate(load_config(str(converted))).to_dict() == validate(config).to_dict()


def test_manual_step_schedule_is_read_in_order(tmp_path):
  path = pipeline(tmp_path)
  text = open(path).read().replace(
      'optimizer_config { adam_optimizer { learning_rate { constant_learning_rate {} } } }',
      f'optimizer_config {{ {OPTIMIZER_TEXTS["rms_prop"]} }}')
  (tmp_path / 'manual.config').write_text(text)
  rms = load_config(str(tmp_path / 'manual.config')).train_config.optimizer_config.rms_prop_optimizer
  manual = rms.learning_rate.manual_step_learning_rate
  assert [(e.step, e.learning_rate) for e in manual.schedule] == [(100, 0.005), (200, 0.001)]
  assert manual.warmup and rms.epsilon == 0.001 and rms.decay == 0.95


def test_unimplemented_optimizer_fields_are_errors(tmp_path):
  path = pipeline(tmp_path, TRAIN='')
  text = open(path).read().replace(
      'optimizer_config { adam_optimizer',
      'optimizer_config { moving_average_decay: 0.99 embedding_learning_rate_multiplier: 2 '
      'adam_optimizer')
  (tmp_path / 'ema.config').write_text(text)
  message = unsupported(str(tmp_path / 'ema.config'))
  assert 'train_config.optimizer_config.moving_average_decay = 0.99: not implemented' in message
  assert 'embedding_learning_rate_multiplier = 2: not implemented' in message


def test_new_metric_fields_round_trip_with_easyrecs_defaults(tmp_path):
  towers = """
  task_towers { tower_name: "ctr" label_name: "clk" dnn { hidden_units: [4] }
    metrics_set { gauc { uid_field: "user" } }
    metrics_set { gauc { uid_field: "item" reduction: "mean_by_positive_num" } }
    metrics_set { session_auc { session_id_field: "user" } }
    metrics_set { session_auc { session_id_field: "item" reduction: "mean_by_sample_num" } }
    metrics_set { max_f1 {} }
    metrics_set { root_mean_squared_error {} } }
  task_towers { tower_name: "cvr" label_name: "buy" num_class: 3 dnn { hidden_units: [4] }
    metrics_set { recall_at_topk {} } metrics_set { recall_at_topk { topk: 2 } } }
  """
  path = pipeline(tmp_path, TOWERS=towers)
  config = validate(load_config(path))
  ctr, cvr = model_params(config.model_config).task_towers
  assert [m.to_dict() for m in ctr.metrics_set] == [
      {'gauc': {'uid_field': 'user', 'reduction': 'mean'}},
      {'gauc': {'uid_field': 'item', 'reduction': 'mean_by_positive_num'}},
      {'session_auc': {'session_id_field': 'user', 'reduction': 'mean'}},
      {'session_auc': {'session_id_field': 'item', 'reduction': 'mean_by_sample_num'}},
      {'max_f1': {}}, {'root_mean_squared_error': {}}]
  assert [m.to_dict() for m in cvr.metrics_set] == [{'recall_at_topk': {'topk': 5}},
                                                    {'recall_at_topk': {'topk': 2}}]
  converted = tmp_path / 'mine.py'
  converted.write_text(easyrec.to_python(path))
  assert load_config(str(converted)).to_dict() == load_config(path).to_dict()
  with pytest.raises(ConfigError, match=r'metrics_set\[0\].gauc.uid_field: required field'):
    load_config(pipeline(tmp_path, TOWERS=towers.replace('gauc { uid_field: "user" }',
                                                         'gauc {}')))


def test_export_config_is_read_with_easyrecs_defaults_and_round_trips(tmp_path):
  """export_config and fine_tune_checkpoint (export.proto, train.proto): set fields are
  read, unset ones take EasyRec's defaults, and the run record's text form reads back."""
  path = pipeline(tmp_path, TRAIN='fine_tune_checkpoint: "runs/old"', EXTRA="""
      export_config { exporter_type: "best" best_exporter_metric: "auc_cvr"
                      enable_early_stop: true max_check_steps: 2000 }""")
  config = load_config(path)
  assert config.train_config.fine_tune_checkpoint == 'runs/old'
  assert config.export_config.to_dict() == dict(
      exporter_type='best', best_exporter_metric='auc_cvr', metric_bigger=True,
      enable_early_stop=True, early_stop_func='', early_stop_params='', max_check_steps=2000,
      exports_to_keep=1)
  again = tmp_path / 'again.config'
  again.write_text(easyrec.to_text(validate(config)))
  assert load_config(str(again)).export_config == config.export_config
  assert load_config(str(again)).train_config.fine_tune_checkpoint == 'runs/old'


@pytest.mark.parametrize('export, message', [
    ('exporter_type: "newest"', "export_config.exporter_type: 'newest'"),
    ('exports_to_keep: 0', 'export_config.exports_to_keep: 0 must be >= 1'),
    ('enable_early_stop: true max_check_steps: 0', 'export_config.max_check_steps: 0'),
    ('early_stop_func: "stop_if_no_increase_hook"', 'export_config.early_stop_func:'),
    ('early_stop_func: "my_stop"', "export_config.early_stop_func: 'my_stop' must be a module"),
])
def test_export_config_errors_name_the_field(tmp_path, export, message):
  path = pipeline(tmp_path, EXTRA=f'export_config {{ {export} }}')
  with pytest.raises(ConfigError, match=re.escape(message)):
    validate(load_config(path))


def test_export_config_fields_without_meaning_here(tmp_path):
  """EasyRec's SavedModel placeholder fields: their defaults are accepted, others named."""
  ok = pipeline(tmp_path, EXTRA='export_config { batch_size: -1 multi_placeholder: true }')
  assert load_config(ok).export_config.exporter_type == 'final'
  bad = pipeline(tmp_path, 'bad.config',
                 EXTRA='export_config { batch_size: 32 multi_value_fields { input_name: "x" } }')
  message = unsupported(bad)
  assert 'export_config.batch_size = 32: not implemented' in message
  assert 'export_config.multi_value_fields: not implemented' in message


def test_file_shard_is_read_with_num_examples(tmp_path):
  """data_config.file_shard (EasyRec default false) is read, and takes the eval rows'
  num_examples (the first rows of the files in the order given, over every process's files:
  tests/test_multihost.py)."""
  assert load_config(pipeline(tmp_path, 'plain.config')).data_config.file_shard is False
  assert load_config(pipeline(tmp_path, DATA='file_shard: true')).data_config.file_shard is True
  path = pipeline(tmp_path, 'n.config', DATA='file_shard: true',
                  EXTRA='eval_config { num_examples: 10 }')
  assert validate(load_config(path)).eval_config.num_examples == 10


def test_num_examples_evaluates_whole_batches_as_easyrec(tmp_path):
  """eval_config.num_examples N: EasyRec evaluates ceil(N / data_config.batch_size) batches
  of batch_size rows (main.py's eval steps), so the first min(rows, ceil(N / 4) * 4) rows
  here (batch_size 4, 10 rows); 0 takes every row."""
  from mmoe_jax.data.columnar import ColumnarData
  from mmoe_jax.training import evaluation
  config = load_config(pipeline(tmp_path))
  config.data_config.update(batch_size=4, eval_batch_size=3)  # eval_batch_size: not EasyRec's
  rows = ColumnarData({}, {'clk': np.arange(10.0)}, 10, 0)
  for n, first in ((1, 4), (4, 4), (5, 8), (8, 8), (9, 10), (11, 10), (0, 10)):
    config.eval_config.num_examples = n
    np.testing.assert_array_equal(evaluation.limit_eval(rows, config).labels['clk'],
                                  np.arange(first), err_msg=f'num_examples {n}')

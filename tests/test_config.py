"""Config: completion with EasyRec defaults, overrides, validation errors."""

import glob
import os
import re
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

import mmoe
from mmoe_jax.config import schema
from mmoe_jax.config import ConfigError, complete, load_config, parse_arg, task_towers, validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('spec', [f'{p}{arg}' for p in sorted(glob.glob(f'{ROOT}/configs/*.py'))
                                  for arg in ('', ':tiny', ':full')])
def test_every_config_file_loads_and_validates(spec):
  if spec.endswith(':full') and 'full' not in open(spec[:-5]).read():
    pytest.skip('this config has no :full variant')
  config = validate(load_config(spec))
  assert task_towers(config.model_config)


def test_seed_config_mirrors_easyrec_sample():
  c = validate(mmoe.get_config())
  group = c.model_config.feature_groups[0]
  assert group.group_name == 'all' and len(group.feature_names) == 17
  assert 'final_gender_code' not in group.feature_names
  assert [f.input_name for f in c.data_config.input_fields][:3] == ['clk', 'buy', 'pid']
  assert len(c.data_config.input_fields) == 20
  m = c.model_config.mmoe
  assert m.expert_dnn.hidden_units == (256, 192, 128, 64) and m.num_expert == 4
  assert [(t.tower_name, t.label_name) for t in m.task_towers] == [('ctr', 'clk'), ('cvr', 'buy')]
  assert m.l2_regularization == 1e-6 and c.model_config.embedding_regularization == 5e-5
  lr = c.train_config.optimizer_config.adam_optimizer.learning_rate
  assert lr.exponential_decay_learning_rate.staircase  # EasyRec's default, not set in the file
  assert mmoe.get_config('full').data_config.batch_size == 4096
  assert mmoe.get_config('full').train_config.num_steps == 5000


def test_complete_fills_easyrec_defaults():
  tower = complete({'tower_name': 'ctr'}, schema.TASK_TOWER)
  assert tower.num_class == 1 and tower.weight == 1.0 and tower.loss_type == 'CLASSIFICATION'
  assert tower.dnn.activation == 'tf.nn.relu' and tower.dnn.use_bn is True
  data = complete({}, schema.DATA_CONFIG)
  assert data.batch_size == 32 and data.separator == ',' and data.eval_batch_size == 4096
  assert complete({}, schema.MMOE).l2_regularization == 1e-4
  lr = complete({'exponential_decay_learning_rate': {}}, schema.LEARNING_RATE)
  assert lr.exponential_decay_learning_rate.decay_factor == 0.95
  assert 'constant_learning_rate' not in lr  # an unset oneof member stays absent


def test_misspelled_key_in_file_names_path_and_suggests():
  raw = mmoe.get_config().to_dict()
  raw['model_config']['mmoe']['task_towers'][1]['tower_nmae'] = 'x'
  with pytest.raises(ConfigError, match=r"model_config\.mmoe\.task_towers\[1\]\.tower_nmae.*"
                     r"did you mean 'tower_name'"):
    complete(raw)


def test_wrong_type_is_rejected():
  raw = mmoe.get_config().to_dict()
  raw['model_config']['mmoe']['num_expert'] = 'four'
  with pytest.raises(ConfigError, match=r'model_config\.mmoe\.num_expert: expected int'):
    complete(raw)


def test_oneof_needs_exactly_one():
  raw = mmoe.get_config().to_dict()
  lr = raw['train_config']['optimizer_config']['adam_optimizer']['learning_rate']
  lr['constant_learning_rate'] = {'learning_rate': 0.1}
  with pytest.raises(ConfigError, match='exactly one of constant_learning_rate'):
    complete(raw)


def _bad(path_setter, match):
  config = mmoe.get_config()
  path_setter(config)
  with pytest.raises(ConfigError, match=match):
    validate(config)


def test_unknown_feature_in_group_names_field():
  def set_(c):
    names = list(c.model_config.feature_groups[0].feature_names)
    names[3] = 'age_levle'
    c.model_config.feature_groups[0].feature_names = tuple(names)
  _bad(set_, r"model_config\.feature_groups\[0\]\.feature_names\[3\]: unknown feature "
       r"'age_levle' \(did you mean 'age_level'\?\)")


def test_unknown_label_names_field():
  def set_(c):
    c.model_config.mmoe.task_towers[1].label_name = 'buyy'
  _bad(set_, r"model_config\.mmoe\.task_towers\[1\]\.label_name: unknown label field 'buyy'")


def test_unknown_label_field_names_field():
  def set_(c):
    c.data_config.label_fields = ('clk', 'purchase')
  _bad(set_, r"data_config\.label_fields\[1\]: unknown input field 'purchase'")


def test_repeated_tower_name():
  def set_(c):
    c.model_config.mmoe.task_towers[1].tower_name = 'ctr'
  _bad(set_, r"model_config\.mmoe\.task_towers\[1\]\.tower_name: 'ctr' is repeated")


def test_feature_input_must_exist():
  def set_(c):
    c.feature_configs[0].input_names = ('pidd',)
  _bad(set_, r"feature_configs\[0\]\.input_names\[0\]: unknown input field 'pidd'")


def test_feature_needs_exactly_one_vocabulary():
  def set_(c):
    c.feature_configs[0].num_buckets = 5
  _bad(set_, r'feature_configs\[0\] \(pid\): set exactly one of hash_bucket_size')


def test_shared_embedding_must_agree():
  def set_(c):
    c.feature_configs[1].embedding_name = 'shared'
    c.feature_configs[2].embedding_name = 'shared'  # 100000 vs 10000 rows
  _bad(set_, r"feature_configs\[2\]\.embedding_name: table 'shared' is shared")


def test_labels_taken_in_order_when_label_name_unset():
  config = mmoe.get_config()
  for tower in config.model_config.mmoe.task_towers:
    tower.label_name = ''
  towers = validate(config).model_config.mmoe.task_towers
  assert [t.label_name for t in towers] == ['clk', 'buy']


def test_validate_resolves_feature_name_and_metrics_and_locks():
  config = mmoe.get_config()
  config.model_config.mmoe.task_towers[0].metrics_set = ()
  config.model_config.mmoe.expert_dnn.activation = 'tf.nn.relu'
  c = validate(config)
  assert c.feature_configs[0].feature_name == 'pid'
  assert 'auc' in c.model_config.mmoe.task_towers[0].metrics_set[0]
  assert c.model_config.mmoe.expert_dnn.activation == 'relu'
  with pytest.raises(AttributeError):
    c.model_config.new_field = 1


def test_parse_arg():
  arg = parse_arg('full,num_steps=10', full=False, tiny=False, num_steps=0)
  assert (arg.full, arg.tiny, arg.num_steps) == (True, False, 10)
  with pytest.raises(ConfigError, match="'fulll'"):
    parse_arg('fulll', full=False)


def _parse_flags(argv):
  """Parses argv as scripts/train.py does (config_flags reads overrides from argv)."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_command_line_overrides_nested_and_list_items():
  c = validate(_parse_flags([
      'prog', f'--config={ROOT}/configs/mmoe.py:tiny',
      '--config.model_config.mmoe.task_towers[0].weight=2',
      '--config.model_config.mmoe.expert_dnn.hidden_units=(8,4)',
      '--config.data_config.batch_size=7']))
  assert c.model_config.mmoe.task_towers[0].weight == 2.0
  assert c.model_config.mmoe.task_towers[1].weight == 1.0
  assert c.model_config.mmoe.expert_dnn.hidden_units == (8, 4)
  assert c.data_config.batch_size == 7


def test_command_line_misspelled_key_fails():
  with pytest.raises((flags.Error, AttributeError), match='num_expret'):
    _parse_flags(['prog', f'--config={ROOT}/configs/mmoe.py',
                  '--config.model_config.mmoe.num_expret=3'])


def test_train_script_rejects_misspelled_feature_before_training(tmp_path):
  model_dir = tmp_path / 'model'
  result = subprocess.run(
      [sys.executable, f'{ROOT}/scripts/train.py', f'--config={ROOT}/configs/mmoe.py:tiny',
       f'--config.model_dir={model_dir}',
       "--config.model_config.feature_groups[0].feature_names=('user_id','brnad')"],
      capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "model_config.feature_groups[0].feature_names[1]: unknown feature 'brnad'" in result.stderr
  assert not model_dir.exists()  # failed before writing data or checkpoints


@pytest.mark.parametrize('path, value', [
    ('train_config.num_steps', -5), ('data_config.num_epochs', -1),
    ('data_config.batch_size', 0), ('data_config.batch_size', -2),
    ('data_config.eval_batch_size', 0), ('train_config.save_checkpoints_steps', 0),
    ('train_config.log_step_count_steps', -10), ('train_config.keep_checkpoint_max', -1)])
def test_bad_step_counts_name_their_field(path, value):
  # EasyRec declares these uint32 (no negative value parses); the sizes must be > 0.
  section, field = path.split('.')
  _bad(lambda c: c[section].__setattr__(field, value),
       rf'^{re.escape(path)}: {value} (is negative|must be > 0)')


def test_num_steps_and_num_epochs_both_unset_is_an_error():
  # EasyRec main.py: 'either num_steps and num_epochs must be set to an integer > 0.'
  def set_(c):
    c.train_config.num_steps = 0
    c.data_config.num_epochs = 0
  _bad(set_, r'train_config\.num_steps, data_config\.num_epochs: both are 0')
  config = mmoe.get_config()
  config.train_config.num_steps = 0  # num_epochs alone is a valid run
  validate(config)


def _tower(c, i=1, **fields):
  c.model_config.mmoe.task_towers[i].update(fields)


def test_regression_metrics_refused_on_multiclass_tower():
  # EasyRec's _build_metric_impl asserts MSE/MAE are 'not supported for this model' there.
  for metric in ('mean_squared_error', 'mean_absolute_error'):
    _bad(lambda c: _tower(c, num_class=3, metrics_set=(complete({metric: {}},
                                                                 schema.EVAL_METRICS),)),
         rf'model_config\.mmoe\.task_towers\[1\]\.metrics_set\[0\]\.{metric}: not defined '
         r'for a CLASSIFICATION tower with num_class 3')


def test_auc_and_accuracy_follow_num_class():
  auc, accuracy = (complete({m: {}}, schema.EVAL_METRICS) for m in ('auc', 'accuracy'))
  _bad(lambda c: _tower(c, num_class=3, metrics_set=(auc,)),
       r'task_towers\[1\]\.metrics_set\[0\]\.auc: needs a CLASSIFICATION tower with num_class '
       r'1 or 2')
  _bad(lambda c: _tower(c, metrics_set=(accuracy,)),
       r'task_towers\[1\]\.metrics_set\[0\]\.accuracy: needs a CLASSIFICATION tower with '
       r'num_class > 1')
  config = mmoe.get_config()
  _tower(config, num_class=2, metrics_set=(auc, accuracy))
  _tower(config, 0, num_class=4, metrics_set=())
  towers = validate(config).model_config.mmoe.task_towers
  assert [list(m) for m in towers[0].metrics_set] == [['accuracy']]  # auc is undefined for 4


def test_multiclass_tower_needs_an_integer_label():
  # EasyRec asserts label.dtype in [int32, int64] for sparse softmax cross entropy.
  def set_(c):
    _tower(c, num_class=3, metrics_set=())
    c.data_config.input_fields[1].input_type = 'FLOAT'  # buy
  _bad(set_, r"task_towers\[1\]\.num_class: 3 classes need an integer label, but input field "
       r"'buy' is FLOAT")


def test_multiclass_output_names_cannot_collide():
  def set_(c):
    _tower(c, 0, num_class=3, metrics_set=())
    _tower(c, 1, tower_name='ctr_1')
  _bad(set_, r"task_towers\[0\]\.tower_name: a tower named 'ctr_1' would share output names")


def test_id_features_read_string_or_int_fields():
  def set_(c):
    c.feature_configs[-1].feature_type = 'TagFeature'  # price: INT32
  _bad(set_, r"feature_configs\[17\]\.input_names\[0\]: input field 'price' is INT32; "
       r'TagFeature reads a STRING field')

  def set_(c):
    c.feature_configs[-1].update(num_buckets=0, vocab_list=('1', '2'))
  _bad(set_, r"feature_configs\[17\]\.input_names\[0\]: input field 'price' is INT32; "
       r'vocab_list reads a STRING field')

  def set_(c):
    c.data_config.input_fields[2].input_type = 'FLOAT'  # pid, hashed
  _bad(set_, r"feature_configs\[0\]\.input_names\[0\]: input field 'pid' is FLOAT; "
       r'IdFeature reads a STRING or INT field')

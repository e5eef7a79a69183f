"""model_dir is the run's record: the recorded config, the resume rules, the lock, per-variant
model_dirs, evaluation with the recorded config, and synthetic data sized for the run."""

import glob
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mmoe
from conftest import EASYREC_CONFIGS, ROOT
from mmoe_jax import data as data_lib
from mmoe_jax.config import ConfigError, load_config, validate
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import evaluation, run_dir, train_lib, writers
from mmoe_jax.training.input_pipeline import batch
from mmoe_jax.training.trainer import Trainer

LR = ('train_config.optimizer_config.adam_optimizer.learning_rate.'
      'exponential_decay_learning_rate.initial_learning_rate')


def short(config, num_steps=4):
  """A config cut to a few steps that checkpoint and evaluate every 2 (seconds on a CPU)."""
  config.train_config.update(num_steps=num_steps, save_checkpoints_steps=2,
                             log_step_count_steps=2)
  config.synthetic.update(train_rows=min(config.synthetic.train_rows, 8192), eval_rows=300)
  return config


def tiny(model_dir, num_steps=4):
  config = short(mmoe.get_config('tiny'), num_steps)
  config.model_dir = str(model_dir)
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A finished 4-step tiny run; tests that change it work on a copy (see `run`)."""
  model_dir = tmp_path_factory.mktemp('trained') / 'model'
  result = train_lib.train_and_evaluate(tiny(model_dir))
  return model_dir, result


@pytest.fixture
def run(trained, tmp_path):
  """A copy of the trained run's model_dir, and its final metrics."""
  model_dir = tmp_path / 'model'
  shutil.copytree(trained[0], model_dir)
  return model_dir, trained[1]


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def set_path(config, path, value):
  *parents, leaf = path.split('.')
  for name in parents:
    config = config[name]
  config[leaf] = value


@pytest.mark.parametrize('spec', ['configs/mmoe.py:tiny', 'configs/mmoe_backbone.py:tiny',
                                  'configs/task_correlation.py:tiny', 'configs/census.py:tiny',
                                  os.path.join(EASYREC_CONFIGS, 'mmoe_taobao.config')])
def test_recorded_pipeline_config_loads_back_equal(spec, tmp_path):
  config = validate(load_config(os.path.join(ROOT, spec) if spec.startswith('configs') else spec))
  config.model_dir = str(tmp_path)
  config.synthetic.train_rows = 1234  # a resolved size, as a run records it
  run_dir.write_record(config)
  text_loaded = load_config(str(tmp_path / 'pipeline.config'))
  assert run_dir.plain(text_loaded) == run_dir.plain(config)
  assert run_dir.read_record(str(tmp_path)) == run_dir.plain(config)
  # seed, synthetic and sharding (not in EasyRec) are in the text form too.
  with open(tmp_path / 'pipeline.config') as f:
    text = f.read()
  assert 'train_rows: 1234' in text and '\nseed: 0' in text and '\nsharding {' in text


def test_a_run_records_its_config(trained):
  model_dir, _ = trained
  recorded = run_dir.read_record(str(model_dir))
  assert recorded == run_dir.plain(validate(tiny(model_dir)))
  assert os.path.exists(model_dir / 'pipeline.config') and os.path.exists(model_dir / 'run.lock')


def test_quick_start_full_and_tiny_in_a_row_each_train_their_own_model(tmp_path, monkeypatch,
                                                                       caplog):
  """The README's quick start, then :full, then :tiny, with their default model_dirs (in a
  temporary working directory), cut to 2 steps and small tables: each trains its own model
  (its batch size and layers) from step 0."""
  monkeypatch.chdir(tmp_path)
  caplog.set_level(logging.INFO, logger='mmoe_jax')
  hidden = {}
  for arg in ('', 'full', 'tiny'):
    config = short(mmoe.get_config(arg), num_steps=2)
    config.synthetic.train_rows = 4096  # the :full batch
    for feature in config.feature_configs:  # small tables: seconds, not minutes, on a CPU
      feature.hash_bucket_size = min(feature.hash_bucket_size, 1000)
    result = train_lib.train_and_evaluate(config)
    assert result['step'] == 2
    hidden[arg] = config.model_config.mmoe.expert_dnn.hidden_units
    recorded = run_dir.read_record(config.model_dir)
    assert recorded['data_config']['batch_size'] == config.data_config.batch_size
    assert tuple(recorded['model_config']['mmoe']['expert_dnn']['hidden_units']) == hidden[arg]
    assert [r['step'] for r in read_jsonl(os.path.join(config.model_dir, 'metrics.jsonl'))] == [2]
  assert 'resumed' not in caplog.text
  assert sorted(os.listdir(tmp_path / 'experiments')) == [
      'mmoe_taobao', 'mmoe_taobao_full', 'mmoe_taobao_tiny']


def test_every_config_variant_has_its_own_model_dir():
  dirs = {}
  for spec in ('mmoe.py', 'mmoe.py:full', 'mmoe.py:tiny', 'mmoe.py:table_scale=100,lazy_adam',
               'mmoe_backbone.py', 'mmoe_backbone.py:full', 'mmoe_backbone.py:tiny,bn',
               'task_correlation.py', 'task_correlation.py:tiny',
               'task_correlation.py:model=omoe,seed=3', 'census.py', 'census.py:tiny',
               'census.py:full', 'census.py:model=omoe,group=2', 'esmm.py', 'esmm.py:tiny',
               'ple.py', 'ple.py:full', 'dbmtl.py', 'dbmtl.py:mmoe', 'simple_multi_task.py:tiny'):
    dirs[spec] = load_config(os.path.join(ROOT, 'configs', spec)).model_dir
  assert len(set(dirs.values())) == len(dirs), dirs
  assert dirs['mmoe.py'] == 'experiments/mmoe_taobao'
  assert dirs['mmoe.py:full'] == 'experiments/mmoe_taobao_full'
  assert dirs['mmoe.py:tiny'] == 'experiments/mmoe_taobao_tiny'
  assert dirs['task_correlation.py:model=omoe,seed=3'] == \
      'experiments/task_correlation/omoe_0.5_seed3'


def test_a_changed_field_that_resume_may_not_change_is_an_error_listing_each(run):
  model_dir, _ = run
  before = sorted(os.listdir(model_dir / 'checkpoints'))
  config = tiny(model_dir, num_steps=6)  # may change
  config.model_config.mmoe.expert_dnn.activation = 'tanh'  # same shapes, another model
  config.data_config.batch_size = 32
  with pytest.raises(ConfigError) as e:
    train_lib.train_and_evaluate(config)
  message = str(e.value)
  assert 'model_config.mmoe.expert_dnn.activation: "relu" -> "tanh"' in message
  assert 'data_config.batch_size: 64 -> 32' in message
  assert 'train_config.num_steps' not in message.split('(These may change')[0]
  assert '--fresh' in message and '--accept_config' in message
  assert sorted(os.listdir(model_dir / 'checkpoints')) == before  # nothing trained


def test_resume_applies_a_new_learning_rate_and_logs_each_change(run, caplog):
  model_dir, _ = run
  caplog.set_level(logging.INFO, logger='mmoe_jax')
  config = tiny(model_dir, num_steps=6)
  set_path(config, LR, 0.005)
  config.train_config.log_step_count_steps = 3 * 2  # a multiple of the dispatch of 2
  assert train_lib.train_and_evaluate(config)['step'] == 6
  assert f'{LR}: 0.001 -> 0.005' in caplog.text
  assert 'train_config.num_steps: 4 -> 6' in caplog.text
  assert 'train_config.log_step_count_steps: 2 -> 6' in caplog.text
  state = checkpoint_lib.restore_or_fail(validate(config), trainer_of(config))
  assert int(state['step']) == 6
  assert float(state['hparams']['learning_rate']) == np.float32(0.005)  # the rate steps use
  assert run_dir.read_record(str(model_dir))['train_config']['num_steps'] == 6


def test_fresh_moves_the_old_run_aside(run):
  model_dir, _ = run
  old_record = run_dir.read_record(str(model_dir))
  old_metrics = read_jsonl(model_dir / 'metrics.jsonl')
  config = tiny(model_dir, num_steps=2)
  config.model_config.mmoe.expert_dnn.activation = 'tanh'
  assert train_lib.train_and_evaluate(config, fresh=True)['step'] == 2
  [old_dir] = glob.glob(f'{model_dir}.old-*')
  assert run_dir.read_record(old_dir) == old_record
  assert read_jsonl(os.path.join(old_dir, 'metrics.jsonl')) == old_metrics
  assert sorted(os.listdir(os.path.join(old_dir, 'checkpoints'))) == ['2', '4']
  assert run_dir.read_record(str(model_dir))['model_config']['mmoe']['expert_dnn'][
      'activation'] == 'tanh'
  assert [r['step'] for r in read_jsonl(model_dir / 'metrics.jsonl')] == [2]


def test_accept_config_continues_from_the_checkpoint(run, caplog):
  model_dir, _ = run
  caplog.set_level(logging.INFO, logger='mmoe_jax')
  config = tiny(model_dir, num_steps=6)
  config.model_config.mmoe.expert_dnn.activation = 'tanh'
  assert train_lib.train_and_evaluate(config, accept_config=True)['step'] == 6
  assert 'at step 4' in caplog.text  # resumed
  assert 'model_config.mmoe.expert_dnn.activation: "relu" -> "tanh"' in caplog.text
  assert run_dir.read_record(str(model_dir))['model_config']['mmoe']['expert_dnn'][
      'activation'] == 'tanh'
  assert [r['step'] for r in read_jsonl(model_dir / 'metrics.jsonl')] == [2, 4, 6]


def test_a_second_run_on_a_locked_model_dir_fails_at_once(tmp_path):
  model_dir = tmp_path / 'model'
  holder = run_dir.open_run(validate(tiny(model_dir)))  # as a training run holds it
  try:
    before = sorted(os.listdir(model_dir))
    second = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'scripts', 'train.py'),
         f'--config={ROOT}/configs/mmoe.py:tiny', f'--config.model_dir={model_dir}'],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert second.returncode != 0
    assert f'{model_dir} is in use by another run (pid {os.getpid()} on ' in second.stderr
    assert sorted(os.listdir(model_dir)) == before  # touched nothing
    with pytest.raises(run_dir.ModelDirInUse, match=f'pid {os.getpid()} on '):
      run_dir.open_run(validate(tiny(model_dir)))
  finally:
    holder.close()
  run_dir.open_run(validate(tiny(model_dir))).close()  # released


def test_metrics_jsonl_holds_one_row_per_step(tmp_path):
  class Writer:
    def scalars(self, *args):
      pass
  writers.record_eval(str(tmp_path), Writer(), 2, dict(auc_ctr=0.5))
  writers.record_eval(str(tmp_path), Writer(), 4, dict(auc_ctr=0.6))
  writers.record_eval(str(tmp_path), Writer(), 4, dict(auc_ctr=0.7))  # 4 evaluated again
  assert read_jsonl(tmp_path / 'metrics.jsonl') == [dict(step=2, auc_ctr=0.5),
                                                   dict(step=4, auc_ctr=0.7)]


def test_evaluate_uses_the_recorded_config(run, caplog):
  model_dir, result = run
  caplog.set_level(logging.INFO, logger='mmoe_jax')
  given = tiny(model_dir)
  given.model_config.mmoe.expert_dnn.activation = 'tanh'  # same shapes, another model
  evaluated = evaluation.evaluate_checkpoint(given)
  assert evaluated['auc_ctr'] == pytest.approx(result['auc_ctr'], abs=1e-9)
  assert 'activation: given "tanh", recorded "relu" (used)' in caplog.text
  as_given = evaluation.evaluate_checkpoint(given, use_given_config=True)
  assert as_given['auc_ctr'] != pytest.approx(result['auc_ctr'], abs=1e-6)
  os.remove(model_dir / 'config.json')  # a run from before records: the given config
  assert evaluation.evaluate_checkpoint(given)['auc_ctr'] == as_given['auc_ctr']
  assert 'records no config' in caplog.text


def trainer_of(config):
  config = validate(config)
  columns = data_lib.load(data_lib.input_paths(config)[1], config)
  return Trainer(config, batch(columns, np.arange(2)))


def test_unset_synthetic_rows_cover_one_epoch_of_the_run_capped(tmp_path, caplog):
  caplog.set_level(logging.INFO, logger='mmoe_jax')
  config = load_config(os.path.join(EASYREC_CONFIGS, 'mmoe_taobao.config'))
  config.train_input_path = config.eval_input_path = ''
  config.model_dir = str(tmp_path / 'model')
  assert config.synthetic.train_rows == 0  # unset
  config.train_config.num_steps = 300
  assert data_lib.synthetic_train_rows(validate(config))[0] == 300 * 4096
  config.train_config.num_steps = 5000  # 20.5M rows of examples: capped
  assert data_lib.synthetic_train_rows(validate(config))[0] == data_lib.SYNTHETIC_TRAIN_ROWS_CAP
  # A run resolves and records the size, and keeps it when resumed for longer.
  config.train_config.num_steps = 10
  with run_dir.open_run(validate(config)) as opened:
    assert opened.config.synthetic.train_rows == 10 * 4096
  assert 'synthetic.train_rows: 40960 rows (unset: one epoch of num_steps x batch_size' \
      in caplog.text
  config.train_config.num_steps = 20
  with run_dir.open_run(validate(config)) as opened:
    assert opened.config.synthetic.train_rows == 10 * 4096
  config.synthetic.train_rows = 5000  # set: respected
  assert data_lib.input_paths(validate(config), log=lambda *a: None)[0].endswith(
      'synthetic_train_5000_0.csv')


def test_synthetic_data_under_a_model_dir_with_a_comma_is_an_error(tmp_path):
  # Its paths would be read as two comma-separated input paths (the sweep's default workdir
  # was experiments/sweeps/<config>_<arg>, and an arg such as 'taobao,tiny' has a comma).
  config = load_config(os.path.join(EASYREC_CONFIGS, 'mmoe_taobao.config'))
  config.train_input_path = config.eval_input_path = ''
  config.model_dir = str(tmp_path / 'a,b')
  config.synthetic.train_rows = 100
  with pytest.raises(ValueError, match=r"model_dir '.*a,b': the synthetic data .* cannot "
                     r"hold ','"):
    data_lib.input_paths(validate(config), log=lambda *a: None)
  assert not os.path.exists(tmp_path / 'a,b')  # nothing written

"""Two processes on localhost (jax.distributed, CPU collectives) train the tiny config as
one: the same global batches, so the same parameters as a single process; under
data_config.file_shard each reads only its files, and evaluation reduces over all rows."""

import csv
import json
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import mmoe
from mmoe_jax import data as data_lib
from mmoe_jax import metrics as metrics_lib
from mmoe_jax.config import easyrec, validate
from mmoe_jax.data import signals, synthetic
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import evaluation, input_pipeline
from mmoe_jax.training import trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def train_command(model_dir):
  return [sys.executable, os.path.join(ROOT, 'scripts', 'train.py'),
          f'--config={ROOT}/configs/mmoe.py:tiny', f'--config.model_dir={model_dir}']


def _env():
  return dict(os.environ,
              PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))


def run_two_processes(command):
  """Runs `command` as processes 0 and 1 of 2 (2 CPU devices each); their (stdout, stderr)
  after checking that both succeeded."""
  port = free_port()
  procs = [subprocess.Popen(
      command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(_env(), JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(i), XLA_FLAGS='--xla_force_host_platform_device_count=2'))
      for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  return outputs


def test_two_processes_train_like_one(tmp_path):
  env = _env()
  outputs = run_two_processes(train_command(tmp_path / 'two'))
  # After, not beside, the pair: a collective waits at most 30 s for the other process
  # (gloo's fixed timeout), so the pair should not compete with a third job for the CPU.
  single = subprocess.run(train_command(tmp_path / 'one'), capture_output=True, text=True,
                          env=env, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  assert 'process 0 of 2; 2 of 4 devices here' in outputs[0][1]
  assert "mesh {'data': 4, 'model': 1} over 4 of 4 devices" in outputs[0][1]
  one = json.loads(single.stdout.strip().splitlines()[-1])
  two = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
  assert two[0] == two[1], 'every process reports the same result'
  assert two[0]['step'] == one['step'] == 20
  for key in ('auc_ctr', 'auc_cvr'):
    assert two[0][key] == pytest.approx(one[key], abs=1e-5)
  # Written once: process 0's metrics, one line per evaluation.
  with open(tmp_path / 'two' / 'metrics.jsonl') as f:
    assert [json.loads(line)['step'] for line in f] == [10, 20]

  # The final parameters, restored onto this process's one device.
  states = []
  for name in ('one', 'two'):
    config = mmoe.get_config('tiny')
    config.model_dir = str(tmp_path / name)
    config = validate(config)
    trainer = trainer_lib.Trainer(config, _example(config))
    states.append(checkpoint_lib.restore_or_fail(config, trainer))
  flat = dict(jax.tree_util.tree_leaves_with_path(states[0]['params']))
  for path, x in jax.tree_util.tree_leaves_with_path(states[1]['params']):
    np.testing.assert_allclose(np.asarray(x), np.asarray(flat[path]), rtol=1e-4, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))


def _raw_column(paths, config, name):
  """The cells of input field `name` in the CSV files `paths`, as written, in file order."""
  column = [f.input_name for f in config.data_config.input_fields].index(name)
  cells = []
  for path in paths:
    with open(path, newline='') as f:
      rows = list(csv.reader(f, delimiter=config.data_config.separator))
    cells += [row[column] for row in rows[config.data_config.with_header:]]
  return np.array(cells)


def _example(config):
  columns = data_lib.load(data_lib.input_paths(config)[1], config)
  return input_pipeline.batch(columns, np.arange(2))


def test_shard_files_is_round_robin_over_the_sorted_names():
  files = ['d', 'a', 'e', 'c', 'b']
  assert [data_lib.shard_files(files, i, 2) for i in (0, 1)] == [['a', 'c', 'e'], ['b', 'd']]
  assert [data_lib.shard_files(files, i, 3) for i in (0, 1, 2)] == [['a', 'd'], ['b', 'e'],
                                                                    ['c']]


def test_file_shard_on_one_process_reads_every_file_as_given(tiny_config, tmp_path):
  """One process: the share is every file in the given order, so the run is the run without
  file_shard; the log lists the files."""
  paths = [str(tmp_path / n) for n in ('b.csv', 'a.csv')]
  for path in paths:
    open(path, 'w').close()
  tiny_config.data_config.file_shard = True
  lines = []
  assert data_lib.process_share(','.join(paths), tiny_config, 'train_input_path',
                                lines.append) == ','.join(paths)
  assert lines == [f'file_shard: process 0 of 1 reads 2 files of train_input_path: '
                   f'{paths[0]}, {paths[1]}']
  assert not data_lib.file_sharded(tiny_config)


def test_first_rows_of_share_follow_the_order_given(tmp_path):
  """num_examples under file_shard: the first rows in the order the files are given, though
  a process holds its files in sorted order (here one process holds both: a.csv's 3 rows,
  then b.csv's 2; given as b, a, the first 4 rows are b's 2 and a's first 2)."""
  paths = [str(tmp_path / n) for n in ('b.csv', 'a.csv')]
  for path in paths:
    open(path, 'w').close()
  first = lambda limit: data_lib.first_rows_of_share((3, 2), ','.join(paths), limit).tolist()
  assert first(4) == [0, 1, 3, 4]
  assert first(1) == [3]
  assert first(9) == [0, 1, 2, 3, 4]


SHARD_STEPS = 6
# The eval rows: EasyRec's ceil(300 / 64) batches of the tiny config's batch_size 64, 320
# rows: all 200 of eval_b (given first) and the first 120 of eval_a, though the sorted order
# puts eval_a first (process 0 holds it, process 1 eval_b).
NUM_EXAMPLES, EVAL_ROWS = 300, 320
# The ctr tower's pairwise loss compares rows of one age_level (7 values in every file).
SESSION = 'age_level'


def _sharded_config(model_dir, train, eval_files):
  config = mmoe.get_config('tiny')
  config.model_dir = str(model_dir)
  config.train_input_path = ','.join(train)
  config.eval_input_path = ','.join(eval_files)
  config.data_config.file_shard = True
  config.train_config.update(num_steps=SHARD_STEPS, save_checkpoints_steps=SHARD_STEPS,
                             log_step_count_steps=3)
  config.eval_config.num_examples = NUM_EXAMPLES
  ctr = config.model_config.mmoe.task_towers[0]
  ctr.metrics_set = (*ctr.metrics_set, {'gauc': {'uid_field': 'user_id'}})
  ctr.losses = ({'loss_type': 'CLASSIFICATION'},
                {'loss_type': 'PAIR_WISE_LOSS', 'pairwise_loss': {'session_name': SESSION}})
  return validate(config)


def test_file_shard_two_processes(tmp_path):
  """file_shard: process p reads and caches files p, p + 2, ... of the sorted list; the run
  trains on the global batches the definition gives (process 0's rows, then process 1's,
  each drawn by BatchSampler(its rows, batch_size / 2, (seed, p))), a pairwise loss's
  sessions being raw values over both processes' rows. Its eval rows are the first rows
  that num_examples takes (whole batches, EasyRec's count) of the eval files in the order
  given, as one process takes them, though each process holds only its files; its AUC is
  the AUC over both processes' rows, not the mean of each process's, and its gauc groups
  the rows of both by raw user_id."""
  from test_metrics_grouped import loop_gauc
  data = tmp_path / 'data'
  # Uneven files, named so that the sorted order differs from the order given.
  train = [str(data / f'train_{name}.csv') for name in ('d', 'a', 'c', 'b')]
  eval_files = [str(data / f'eval_{name}.csv') for name in ('b', 'a')]
  # One world (users, ads), a stream of impressions per file: users recur across files.
  for path, rows in zip(train + eval_files, (300, 500, 400, 700, 200, 350)):
    synthetic.write_csv(path, rows, seed=0, split=os.path.basename(path))
  config = _sharded_config(tmp_path / 'two', train, eval_files)
  config_path = tmp_path / 'pipeline.config'
  config_path.write_text(easyrec.to_text(config))
  outputs = run_two_processes(train_command(config.model_dir)[:2] + [f'--config={config_path}'])
  shares = {0: (['train_a', 'train_c'], ['eval_a']), 1: (['train_b', 'train_d'], ['eval_b'])}
  for p, (_, err) in enumerate(outputs):
    own, other = shares[p], shares[1 - p]
    for field, names in zip(('train_input_path', 'eval_input_path'), own):
      files = ', '.join(str(data / f'{n}.csv') for n in names)
      assert f'process {p} of 2 reads {len(names)} files of {field}: {files}' in err, err[-3000:]
    cached = re.findall(r'(\w+\.csv): (?:built cache|cache hit)', err)
    assert sorted(cached) == sorted(f'{n}.csv' for n in own[0] + own[1]), err[-3000:]
  two = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
  assert two[0] == two[1], 'every process reports the same result'
  assert two[0]['step'] == SHARD_STEPS

  # The expected run: the same steps on the global batches built from the definition.
  trainer = trainer_lib.Trainer(config, _example(config))
  local = [data_lib.load(','.join(data_lib.shard_files(train, p, 2)), config) for p in (0, 1)]
  # A session is one raw value over both processes' rows, as with one process, however each
  # process coded its own (first seen first, which differs between them).
  raw = [_raw_column(data_lib.shard_files(train, p, 2), config, SESSION) for p in (0, 1)]
  assert list(dict.fromkeys(raw[0])) != list(dict.fromkeys(raw[1]))
  values = sorted(set(raw[0]) | set(raw[1]))
  for rows, cells in zip(local, raw):
    rows.labels[signals.session_key(SESSION)] = np.array([values.index(v) for v in cells],
                                                         np.int32)
  samplers = [input_pipeline.BatchSampler(rows.num_rows, config.data_config.batch_size // 2,
                                          (config.seed, p)) for p, rows in enumerate(local)]
  state = trainer.create_state()
  for step in range(SHARD_STEPS):
    parts = [input_pipeline.batch(rows, s.indices(step)) for rows, s in zip(local, samplers)]
    state, _ = trainer.train_step(state, jax.tree.map(lambda *x: np.concatenate(x), *parts))
  got = checkpoint_lib.restore_or_fail(config, trainer)
  flat = dict(jax.tree_util.tree_leaves_with_path(state['params']))
  for path, x in jax.tree_util.tree_leaves_with_path(got['params']):
    np.testing.assert_allclose(np.asarray(x), np.asarray(flat[path]), rtol=1e-4, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))

  # Evaluation over the first EVAL_ROWS rows of the files in the order given, here
  # predicted in one process; the user ids as the files spell them.
  assert config.data_config.batch_size == 64
  every = data_lib.load(','.join(eval_files), config).take(np.arange(EVAL_ROWS))
  predictions = evaluation.predict_rows(trainer, got, every)
  users = _raw_column(eval_files, config, 'user_id')[:EVAL_ROWS]
  for tower in trainer.towers:
    labels, scores = every.labels[tower.label_name], metrics_lib.binary_score(tower, predictions)
    assert two[0][f'auc_{tower.tower_name}'] == pytest.approx(metrics_lib.auc(labels, scores),
                                                              abs=1e-5)
  labels, scores = every.labels['clk'], predictions['probs_ctr']
  gauc = loop_gauc(labels, scores, users, 'mean')
  assert 0 < gauc < 1 and two[0]['gauc_ctr'] == pytest.approx(gauc, abs=1e-5)
  # The test tells these apart: each process's rows grouped by its own codes (one number per
  # distinct value of its rows), which a user in both files would split or two users merge.
  codes = [np.unique(part, return_inverse=True)[1] for part in (users[:200], users[200:])]
  assert set(users[:200]) & set(users[200:]), 'a user with rows in both processes'
  assert abs(metrics_lib.grouped_auc(labels, scores, np.concatenate(codes)) - gauc) > 1e-3
  # ... the first rows of the sorted files (eval_a's), and the mean of each process's AUC.
  first = data_lib.load(eval_files[1], config).take(np.arange(EVAL_ROWS))
  sorted_first = metrics_lib.auc(first.labels['clk'],
                                 evaluation.predict_rows(trainer, got, first)['probs_ctr'])
  assert abs(sorted_first - two[0]['auc_ctr']) > 1e-3
  per_process = [metrics_lib.auc(labels[rows], scores[rows])
                 for rows in (slice(0, 200), slice(200, None))]
  assert abs(np.mean(per_process) - two[0]['auc_ctr']) > 1e-3, 'the test tells the two apart'

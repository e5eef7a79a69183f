"""Two processes on localhost (jax.distributed, CPU collectives) train the tiny config as
one: the same global batches, so the same parameters as a single process."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import mmoe
from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.training import checkpoint as checkpoint_lib
from mmoe_jax.training import input_pipeline
from mmoe_jax.training import trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def train_command(model_dir):
  return [sys.executable, os.path.join(ROOT, 'scripts', 'train.py'),
          f'--config={ROOT}/configs/mmoe.py:tiny', f'--config.model_dir={model_dir}']


def test_two_processes_train_like_one(tmp_path):
  env = dict(os.environ,
             PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
  port = free_port()
  procs = [subprocess.Popen(
      train_command(tmp_path / 'two'), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(env, JAX_COORDINATOR_ADDRESS=f'localhost:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(i), XLA_FLAGS='--xla_force_host_platform_device_count=2'))
      for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  # After, not beside, the pair: a collective waits at most 30 s for the other process
  # (gloo's fixed timeout), so the pair should not compete with a third job for the CPU.
  single = subprocess.run(train_command(tmp_path / 'one'), capture_output=True, text=True,
                          env=env, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
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


def _example(config):
  columns = data_lib.load(data_lib.input_paths(config)[1], config)
  return input_pipeline.batch(columns, np.arange(2))

"""The command-line scripts, as a user runs them: kill and resume, evaluate, predict."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name, *args, **kw):
  return [sys.executable, os.path.join(ROOT, 'scripts', name),
          f'--config={ROOT}/configs/mmoe.py:tiny', *args]


def test_killed_run_resumes_then_evaluate_and_predict(tmp_path):
  model_dir = str(tmp_path / 'model')
  train = script('train.py', f'--config.model_dir={model_dir}',
                 '--config.train_config.num_steps=200', '--config.train_config.save_checkpoints_steps=20')
  proc = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  ckpts = os.path.join(model_dir, 'checkpoints')
  deadline = time.time() + 120
  while time.time() < deadline and not (os.path.isdir(ckpts) and
                                         any(d.isdigit() for d in os.listdir(ckpts))):
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)  # no chance to clean up, as with a preempted machine
  proc.wait()
  saved = sorted(int(d) for d in os.listdir(ckpts) if d.isdigit())
  assert saved and saved[-1] < 200, 'the run should have been killed midway'

  done = subprocess.run(train, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert f'at step {saved[-1]}' in done.stderr  # "resumed from ... at step N"
  final = json.loads(done.stdout.strip().splitlines()[-1])
  assert final['step'] == 200

  evaluated = subprocess.run(script('evaluate.py', f'--config.model_dir={model_dir}'),
                             capture_output=True, text=True, timeout=300)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
  assert metrics['auc_ctr'] == pytest.approx(final['auc_ctr'], abs=1e-9)

  eval_csv = os.path.join(model_dir, 'data', 'synthetic_eval_500_0.csv')
  out_csv = str(tmp_path / 'pred.csv')
  predicted = subprocess.run(script('predict.py', f'--config.model_dir={model_dir}',
                                    f'--input_path={eval_csv}', f'--output_path={out_csv}'),
                             capture_output=True, text=True, timeout=300)
  assert predicted.returncode == 0, predicted.stderr[-2000:]
  with open(out_csv) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 500 and set(rows[0]) == {'probs_ctr', 'probs_cvr'}
  probs = np.array([float(r['probs_ctr']) for r in rows])
  assert np.all((probs > 0) & (probs < 1)) and probs.std() > 0
  # Rows are in input order: the predictions reproduce the evaluated AUC.
  from mmoe_jax.metrics import auc
  with open(eval_csv) as f:
    clicks = np.array([int(line.split(',')[0]) for line in f])
  assert auc(clicks, probs) == pytest.approx(final['auc_ctr'], abs=1e-5)

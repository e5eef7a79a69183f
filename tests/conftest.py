import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'configs'))  # `import mmoe` gives configs/mmoe.py
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data')
EASYREC_CONFIGS = os.path.join(ROOT, '..', 'shared', 'easyrec_configs')  # EasyRec .config files


@pytest.fixture
def tiny_config(tmp_path):
  """configs/mmoe.py:tiny writing under a temporary model_dir."""
  import mmoe
  config = mmoe.get_config('tiny')
  config.model_dir = str(tmp_path / 'model')
  return config


def run_under_eight_devices(test_file, passed):
  """Runs tests/<test_file> with pytest in a process of 8 fake CPU devices (XLA_FLAGS must
  be set before jax is imported) and asserts that `passed` tests passed."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
  done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                         os.path.join(ROOT, 'tests', test_file)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
  assert re.search(rf'\b{passed} passed', done.stdout), done.stdout[-2000:]

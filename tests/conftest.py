import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'configs'))  # `import mmoe` gives configs/mmoe.py
SHARED_DATA = os.path.join(ROOT, '..', 'shared', 'data')

# One persistent XLA compilation cache for every process of this run: pytest's, its xdist
# workers and the subprocesses tests start (they inherit the environment). Many tests
# compile the same tiny programs in fresh jit closures or fresh processes; with the cache
# each is compiled once (measured: a third less CPU time for tests/test_train.py alone).
# It is fresh per run and removed at its end, so nothing carries over between runs. Set here,
# before anything imports jax, which reads these variables at import. Processes may write
# one entry at once; jax writes only from process 0 of a distributed run, and a torn read is
# a warning and a recompile, not a wrong program (entries are compressed and keyed by the
# program's hash).
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _JAX_CACHE = tempfile.mkdtemp(prefix='mmoe_jax_xla_cache_')
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_JAX_CACHE,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
else:
  _JAX_CACHE = None  # the caller's (or, in an xdist worker, the controller's)


def pytest_unconfigure(config):
  if _JAX_CACHE:
    shutil.rmtree(_JAX_CACHE, ignore_errors=True)
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

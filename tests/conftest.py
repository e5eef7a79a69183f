import os
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

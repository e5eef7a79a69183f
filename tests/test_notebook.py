"""notebooks/ablation.ipynb runs top to bottom at a tiny size (its own small sweep)."""

import json
import os

from conftest import ROOT


def test_ablation_notebook_runs_and_saves_its_figures(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv('MMOE_NOTEBOOK_TINY', '1')
  monkeypatch.setenv('MMOE_NOTEBOOK_FIGURES', str(tmp_path))
  monkeypatch.chdir(ROOT)
  with open(os.path.join(ROOT, 'notebooks', 'ablation.ipynb')) as f:
    notebook = json.load(f)
  namespace = {}
  for cell in notebook['cells']:
    if cell['cell_type'] == 'code':
      exec(compile(''.join(cell['source']), 'ablation.ipynb', 'exec'), namespace)
  for name in ('loss_vs_correlation.png', 'trainability.png', 'gate_weights.png', 'mtl_zoo.png'):
    assert os.path.getsize(tmp_path / name) > 10000, name
  out = capsys.readouterr().out
  assert '18 replicas' in out  # 2 correlations x 3 models x 3 seeds
  assert 'MMoE   p = 0.5: gate distance' in out

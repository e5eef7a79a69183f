"""The import directions the README states (design.md, "Which way imports run"), checked on
the source: a module that imports across a forbidden edge fails here, naming both."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'mmoe_jax')

# Package part -> parts of mmoe_jax it must never import. A part is the first name under
# mmoe_jax (a subpackage or a top-level module).
FORBIDDEN = {
    'models': {'config', 'data', 'training', 'builder', 'sharding', 'cli'},
    'data': {'models', 'training', 'builder', 'sharding', 'cli'},
    # config checks a backbone's wiring with the layers' shape rules (models/registry.py)
    # and the task-correlation data's parameters: it reads models and data, never the reverse.
    'config': {'training', 'builder', 'sharding', 'cli'},
    'metrics': {'models', 'data', 'training', 'builder', 'config', 'sharding', 'cli'},
    'sharding': {'models', 'data', 'training', 'builder', 'cli'},
    'builder': {'data', 'training', 'cli'},
    'training': {'cli'},
    # the loader of exported models: no model code, no config, nothing of training
    'serving': {'models', 'config', 'training', 'builder', 'sharding', 'cli', 'metrics'},
}
# What importing mmoe_jax.serving may load besides the standard library: jax (and what it
# loads), numpy, pyarrow, and the numpy transforms of mmoe_jax.data.
SERVING_FORBIDDEN = ('flax', 'optax', 'orbax', 'ml_collections', 'tensorflow', 'absl.flags',
                     'mmoe_jax.models', 'mmoe_jax.config', 'mmoe_jax.training',
                     'mmoe_jax.builder', 'mmoe_jax.sharding')


def imported_parts(path):
  """The mmoe_jax parts a file imports (absolute imports; the package uses no relative ones)."""
  tree = ast.parse(open(path).read(), path)
  parts = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      assert node.level == 0, f'{path}: relative import'
      names = [node.module] if node.module != 'mmoe_jax' else [
          f'mmoe_jax.{a.name}' for a in node.names]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    else:
      continue
    parts.update(n.split('.')[1] for n in names if n.startswith('mmoe_jax.'))
  return parts


def package_files():
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, PACKAGE)
        yield rel.split(os.sep)[0].removesuffix('.py'), path


def test_import_directions():
  violations = [f'{os.path.relpath(path, ROOT)} imports mmoe_jax.{p}'
                for part, path in package_files()
                for p in imported_parts(path) & FORBIDDEN.get(part, set())]
  assert not violations, violations


def test_nothing_imports_scripts():
  for _, path in package_files():
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [node.module or ''] if isinstance(node, ast.ImportFrom) else [
            a.name for a in node.names]
        assert not any(n.split('.')[0] == 'scripts' for n in names), path


@pytest.mark.parametrize('source,part', [
    ('from mmoe_jax.config import validate\n', 'config'),
    ('from mmoe_jax import data as data_lib\n', 'data'),
    ('import mmoe_jax.training.trainer\n', 'training'),
])
def test_checker_sees_each_import_form(tmp_path, source, part):
  path = tmp_path / 'm.py'
  path.write_text(source)
  assert imported_parts(str(path)) == {part}


def test_serving_loads_no_model_code():
  """mmoe_jax.serving, imported in a fresh process, loads none of SERVING_FORBIDDEN (the
  static check above sees only its own imports, this one what they import in turn)."""
  import subprocess
  import sys
  code = 'import sys, mmoe_jax.serving; print(" ".join(sys.modules))'
  done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  modules = done.stdout.split()
  assert 'mmoe_jax.data.features' in modules and 'jax' in modules  # the check sees imports
  loaded = [m for m in modules if m == 'flax' or m.startswith(SERVING_FORBIDDEN)]
  assert not loaded, loaded

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
}


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

"""Census-Income (KDD): the tfds builder, TFDSInput, configs/census.py and the LR baseline.

Runs on a slice of the shared official test file (its first 2000 rows), prepared once.
"""
import gzip
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import ROOT, SHARED_DATA
from mmoe_jax import data as data_lib
from mmoe_jax.config import ConfigError, import_config, validate
from mmoe_jax.data import census, features
from mmoe_jax.training import train_lib

CENSUS_GZ = os.path.join(SHARED_DATA, 'census_income_kdd', 'census-income.test.gz')
ROWS = 2000
census_config = import_config(os.path.join(ROOT, 'configs', 'census.py'))
baselines = import_config(os.path.join(ROOT, 'scripts', 'census_baselines.py'))
needs_data = pytest.mark.skipif(not os.path.exists(CENSUS_GZ),
                                reason=f'{CENSUS_GZ} is absent (see README, "Data")')


@pytest.fixture(scope='module')
def manual_dir(tmp_path_factory):
  if not os.path.exists(CENSUS_GZ):
    pytest.skip(f'{CENSUS_GZ} is absent (see README, "Data")')
  path = tmp_path_factory.mktemp('manual')
  with gzip.open(CENSUS_GZ, 'rt') as f:
    lines = [next(f) for _ in range(ROWS)]
  with gzip.open(path / 'census-income.test.gz', 'wt') as f:
    f.writelines(lines)
  return str(path)


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  """Shared by the tests that train: the slice is prepared and cached once."""
  return str(tmp_path_factory.mktemp('cache'))


def prepare(data_dir, manual_dir, seed=0):
  config = census.CensusIncomeKddConfig(name=f'seed{seed}', split_seed=seed)
  builder = census.CensusIncomeKdd(data_dir=str(data_dir), config=config,
                                   file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir))
  return builder


def split_lines(builder):
  return {split: sorted(row['source_line'] for row in builder.as_data_source(split)
                        .__getitems__(list(range(info.num_examples))))
          for split, info in builder.info.splits.items()}


def tiny_config(tmp_path, cache_dir, manual_dir, arg=''):
  config = census_config.get_config(f'tiny,manual_dir={manual_dir}' + (f',{arg}' if arg else ''))
  config.model_dir = str(tmp_path / 'model')
  config.data_config.cache_dir = cache_dir
  return config


# ---- the builder -------------------------------------------------------------------------

def test_seeded_split_covers_the_file_once(tmp_path, manual_dir):
  builder = prepare(tmp_path, manual_dir)
  lines = split_lines(builder)
  assert {k: len(v) for k, v in lines.items()} == dict(train=1200, validation=400, test=400)
  assert sorted(sum(lines.values(), [])) == list(range(1, ROWS + 1))
  assert 'split 60/20/20' in builder.info.metadata['split']
  # The split is a function of the seed alone: the builder's lines are split_rows(seed 0)'s.
  parts = census.split_rows(ROWS, (0.6, 0.2, 0.2), seed=0)
  assert [lines[k] for k in ('train', 'validation', 'test')] == [list(p + 1) for p in parts]
  again = census.split_rows(ROWS, (0.6, 0.2, 0.2), seed=0)
  assert all(np.array_equal(a, b) for a, b in zip(parts, again))
  assert not np.array_equal(census.split_rows(ROWS, (0.6, 0.2, 0.2), seed=1)[2], parts[2])


def test_with_the_train_file_validation_and_test_halve_the_test_file(tmp_path, manual_dir):
  both = tmp_path / 'both'
  both.mkdir()
  with gzip.open(os.path.join(manual_dir, 'census-income.test.gz'), 'rt') as f:
    lines = f.readlines()
  (both / 'census-income.data').write_text(''.join(lines[:300]))  # the train file, unzipped
  (both / 'census-income.test').write_text(''.join(lines[300:500]))
  splits = {k: v.num_examples for k, v in prepare(tmp_path / 'd', str(both)).info.splits.items()}
  assert splits == dict(train=300, validation=100, test=100)


def test_labels_and_columns_match_the_raw_file(tmp_path, manual_dir):
  with gzip.open(CENSUS_GZ, 'rt') as f:
    raw = [next(f).rstrip('\n').split(', ') for _ in range(ROWS)]
  builder = prepare(tmp_path, manual_dir)
  counts = np.zeros(3, int)
  for split, info in builder.info.splits.items():
    for row in builder.as_data_source(split).__getitems__(list(range(info.num_examples))):
      fields = raw[row['source_line'] - 1]
      education = fields[4]
      expected = (fields[41] == '50000+.', fields[7] == 'Never married',
                  'degree' in education and not education.startswith('Some college'))
      assert (row['income_50k'], row['never_married'], row['college']) == expected
      counts += expected
      assert row['age'] == int(fields[0]) and row['education'] == education.encode()
      assert row['country_of_birth_self'] == fields[34].encode()
      assert row['year'] == fields[40].encode() and 'instance_weight' not in row
  assert counts.min() > 50  # every label has positives in the slice


def test_missing_manual_files_name_the_config_field(tmp_path):
  config = tiny_config(tmp_path, str(tmp_path / 'cache'), str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r'data_config\.tfds\.manual_dir .*'
                                              r'census-income\.test \(or census-income\.test'
                                              r'\.gz\) not found'):
    data_lib.load('train', validate(config))
  config.data_config.tfds.manual_dir = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='data_config.tfds.manual_dir: .*nowhere.* is not a '
                                              'directory'):
    data_lib.load('train', validate(config))
  config.data_config.tfds.manual_dir = ''
  with pytest.raises(FileNotFoundError, match='(?s)data_config.tfds.manual_dir: unset.*'
                                              'archive.ics.uci.edu'):
    data_lib.load('train', validate(config))


# ---- configs -----------------------------------------------------------------------------

ALL_CONFIGS = [f'model={m},group={g}' for m in census_config.MODELS if m != 'single_task'
               for g in (1, 2)] + [f'model=single_task,task={t}' for t in census.LABELS]


@pytest.mark.parametrize('arg', ALL_CONFIGS)
def test_label_sources_are_not_inputs(arg):
  config = validate(census_config.get_config(arg))
  inputs = {f.input_name for f in config.data_config.input_fields}
  assert not inputs & set(census.LABEL_SOURCES)
  read = {name for f in config.feature_configs for name in f.input_names}
  assert read == set(census_config.FEATURES)
  grouped = {n for g in config.model_config.feature_groups for n in g.feature_names}
  assert grouped == set(census_config.FEATURES)


def test_config_cannot_read_a_label_source():
  config = census_config.get_config('')
  config.feature_configs += (dict(config.feature_configs[1].to_dict(),
                                  input_names=('education',), feature_name='education'),)
  with pytest.raises(ConfigError, match="unknown input field 'education'"):
    validate(config)


def test_config_features_are_the_builders_inputs():
  names = [n for n, _ in census.INPUT_COLUMNS if n not in census.LABEL_SOURCES]
  assert tuple(names) == census_config.FEATURES
  numeric = {n for n, is_numeric in census.INPUT_COLUMNS if is_numeric}
  assert set(census_config.BOUNDARIES) == numeric


@needs_data
def test_hash_buckets_keep_every_value_apart():
  values = {name: set() for name in census_config.HASH_BUCKETS}
  codes = {name: set() for name in census_config.NUM_BUCKETS}
  for _, row in census.read_rows(CENSUS_GZ):
    for name in values:
      values[name].add(row[name])
    for name in codes:
      codes[name].add(int(row[name]))
  for name, size in census_config.HASH_BUCKETS.items():
    ids = features.fnv1a_64(sorted(values[name])) % size
    assert len(set(ids.tolist())) == len(values[name]), name
  for name, size in census_config.NUM_BUCKETS.items():
    assert max(codes[name]) < size, name


def test_shared_bottom_matches_the_experts_parameters():
  d = census_config.EMBEDDING_DIM * len(census_config.FEATURES)
  units = census_config.bottom_units()
  moe = 8 * d * 16 + 2 * 16 * 8
  assert abs((d + 2 * 8) * units - moe) / moe < 0.01


def test_tfds_input_needs_a_name_and_a_split():
  config = census_config.get_config('')
  config.data_config.tfds.name = ''
  with pytest.raises(ConfigError, match='data_config.tfds.name'):
    validate(config)
  config = census_config.get_config('')
  config.train_input_path = ''
  with pytest.raises(ConfigError, match='train_input_path'):
    validate(config)


# ---- training and the baseline -----------------------------------------------------------

@pytest.mark.parametrize('arg', ['model=mmoe', 'model=omoe', 'model=shared_bottom,group=2',
                                 'model=single_task,task=college'])
def test_tiny_config_trains(tmp_path, cache_dir, manual_dir, arg):
  config = tiny_config(tmp_path, cache_dir, manual_dir, arg)
  result = train_lib.train_and_evaluate(config)
  assert result['step'] == config.train_config.num_steps
  towers = config.data_config.label_fields  # census towers are named by their label
  assert sorted(k for k in result if k.startswith('auc_')) == sorted(f'auc_{t}' for t in towers)
  assert all(0 <= result[f'auc_{t}'] <= 1 for t in towers)
  assert not any(k.startswith('oracle') for k in result)


def test_split_name_is_checked(tmp_path, cache_dir, manual_dir):
  config = validate(tiny_config(tmp_path, cache_dir, manual_dir))
  with pytest.raises(ValueError, match="'valid' is not a split of census_income_kdd"):
    data_lib.load('valid', config)


def test_baseline_runs_on_the_slice(tmp_path, cache_dir, manual_dir):
  config = validate(tiny_config(tmp_path, cache_dir, manual_dir))
  rows = baselines.baselines(config, 1, [1e-4, 1e-2], steps=30, log=lambda _: None)
  assert [r['task'] for r in rows] == ['income_50k', 'never_married']
  assert all(r['l2'] in (1e-4, 1e-2) and r['train_rows'] == 1200 for r in rows)
  assert rows[1]['test_auc'] > 0.9  # never married is easy: household status gives it away

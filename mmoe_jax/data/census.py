"""UCI Census-Income (KDD) as a tensorflow_datasets builder, read from a manual directory.

The MMoE paper's (Ma et al., KDD 2018, section 6.3) public benchmark. Built without
TensorFlow, to array_record (the only format tfds reads back without TF):

  builder = CensusIncomeKdd(data_dir=..., file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=...))
  rows = builder.as_data_source('train')  # read with __getitems__ in batches

Splits: with census-income.data in the manual directory, train is that file and the
official test file is split 1:1 into validation and test (the paper's split). With only
census-income.test, that file alone is split 60/20/20 into train/validation/test. Both
splits are random with the config's split_seed, so they are the same on every machine.

Every example holds the 40 raw input columns of UCI's census-income.names under snake_case
names (strings for categorical columns, int32 for numeric ones; the `instance weight` is
dropped, as UCI says it must not be an input), `source_line` (the 1-based line of the row
in its file) and four 0/1 labels:

  income_50k          income (last column) == '50000+.'
  never_married       marital_stat == 'Never married'
  college             education is a college degree: one of COLLEGE (associates, bachelors,
                      masters, professional school, doctorate); 'Some college but no degree'
                      is not one
  (group 1 of the paper: income_50k + never_married; group 2: college + never_married)

`income`, `marital_stat` and `education` hold the labels' sources: a model config must not
read them (configs/census.py does not).
"""

import gzip
import logging
import os

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

log = logging.getLogger('mmoe_jax')

TRAIN_FILE, TEST_FILE = 'census-income.data', 'census-income.test'

# UCI census-income.names, in file order: (name, is numeric). Column 24 is the instance
# weight, which is not stored.
COLUMNS = (
    ('age', True), ('class_of_worker', False), ('detailed_industry_recode', False),
    ('detailed_occupation_recode', False), ('education', False), ('wage_per_hour', True),
    ('enroll_in_edu_inst_last_wk', False), ('marital_stat', False),
    ('major_industry_code', False), ('major_occupation_code', False), ('race', False),
    ('hispanic_origin', False), ('sex', False), ('member_of_a_labor_union', False),
    ('reason_for_unemployment', False), ('full_or_part_time_employment_stat', False),
    ('capital_gains', True), ('capital_losses', True), ('dividends_from_stocks', True),
    ('tax_filer_stat', False), ('region_of_previous_residence', False),
    ('state_of_previous_residence', False), ('detailed_household_and_family_stat', False),
    ('detailed_household_summary_in_household', False), ('instance_weight', True),
    ('migration_code_change_in_msa', False), ('migration_code_change_in_reg', False),
    ('migration_code_move_within_reg', False), ('live_in_this_house_1_year_ago', False),
    ('migration_prev_res_in_sunbelt', False), ('num_persons_worked_for_employer', True),
    ('family_members_under_18', False), ('country_of_birth_father', False),
    ('country_of_birth_mother', False), ('country_of_birth_self', False),
    ('citizenship', False), ('own_business_or_self_employed', False),
    ('fill_inc_questionnaire_for_veterans_admin', False), ('veterans_benefits', False),
    ('weeks_worked_in_year', True), ('year', False), ('income', False),
)
DROPPED = ('instance_weight',)
INPUT_COLUMNS = tuple((name, numeric) for name, numeric in COLUMNS if name not in DROPPED)
LABEL_SOURCES = ('income', 'marital_stat', 'education')  # never a model input

INCOME_50K = '50000+.'
NEVER_MARRIED = 'Never married'
COLLEGE = ('Associates degree-occup /vocational', 'Associates degree-academic program',
           'Bachelors degree(BA AB BS)', 'Masters degree(MA MS MEng MEd MSW MBA)',
           'Prof school degree (MD DDS DVM LLB JD)', 'Doctorate degree(PhD EdD)')
LABELS = ('income_50k', 'never_married', 'college')
GROUPS = {1: ('income_50k', 'never_married'), 2: ('college', 'never_married')}


def labels(row):
  """The 0/1 labels of one parsed row (a dict of raw column values)."""
  return dict(income_50k=int(row['income'] == INCOME_50K),
              never_married=int(row['marital_stat'] == NEVER_MARRIED),
              college=int(row['education'] in COLLEGE))


def find_file(manual_dir, name):
  """`name` or `name.gz` in manual_dir, or None."""
  for candidate in (name, name + '.gz'):
    path = os.path.join(manual_dir, candidate)
    if os.path.isfile(path):
      return path
  return None


def read_rows(path):
  """Yields (1-based line, row dict) of a UCI file: fields separated by ', ', 42 per row."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      line = line.rstrip('\r\n')
      if not line.strip():
        continue
      values = [v.strip() for v in line.split(',')]
      if len(values) != len(COLUMNS):
        raise ValueError(f'{path}:{lineno}: expected {len(COLUMNS)} fields, got {len(values)}')
      row = {}
      for (name, numeric), value in zip(COLUMNS, values):
        if name in DROPPED:
          continue
        try:
          row[name] = int(value) if numeric else value
        except ValueError:
          raise ValueError(f'{path}:{lineno}: column {name!r}: {value!r} is not an integer'
                           ) from None
      yield lineno, row


def split_rows(num_rows, fractions, seed):
  """A seeded random split of range(num_rows): one sorted index array per fraction.

  Sizes are floor(fraction * num_rows) except the last, which takes the rest, so they
  always sum to num_rows.
  """
  perm = np.random.default_rng(seed).permutation(num_rows)
  bounds = np.cumsum([int(f * num_rows) for f in fractions[:-1]])
  return [np.sort(part) for part in np.split(perm, bounds)]


class CensusIncomeKddConfig(tfds.core.BuilderConfig):
  """split_seed: the seed of the random validation/test (and train) split."""

  def __init__(self, *, split_seed=0, **kwargs):
    super().__init__(**kwargs)
    self.split_seed = split_seed


class CensusIncomeKdd(tfds.core.GeneratorBasedBuilder):
  """UCI Census-Income (KDD), with the MMoE paper's labels."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [CensusIncomeKddConfig(name='default', split_seed=0,
                                           description='Splits drawn with seed 0.')]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download the UCI Census-Income (KDD) files (UCI dataset id 117, "Census-Income (KDD)"):
    https://archive.ics.uci.edu/dataset/117/census+income+kdd
    (older mirror: https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/)
  and put {TRAIN_FILE} and {TEST_FILE} (or their .gz versions, as UCI ships them) in the
  manual directory. With {TEST_FILE} alone, that file is split 60/20/20 into
  train/validation/test instead of the paper's split.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    # tfds 4.9.10 finds a packaged builder's file through `importlib_resources`, a package it
    # does not install (ModuleNotFoundError on download_and_prepare); this file is the answer.
    return epath.Path(__file__)

  def _info(self):
    features = {name: tfds.features.Scalar(np.int32) if numeric else tfds.features.Text()
                for name, numeric in INPUT_COLUMNS}
    features.update({name: tfds.features.ClassLabel(num_classes=2) for name in LABELS})
    features['source_line'] = tfds.features.Scalar(np.int32, doc='1-based line in the UCI file')
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'UCI Census-Income (KDD), 1994/95 US census, with the labels of the MMoE paper '
            '(income_50k, never_married, college). With census-income.data present: train = '
            'that file, validation/test = census-income.test split 1:1 (the paper). With '
            'only census-income.test: that file split 60/20/20 into train/validation/test. '
            'metadata.json says which one this build used.'),
        features=tfds.features.FeaturesDict(features),
        homepage='https://archive.ics.uci.edu/dataset/117/census+income+kdd',
        citation='Lane, T. and Kohavi, R. Census-Income (KDD). UCI Machine Learning '
                 'Repository, 2000. https://doi.org/10.24432/C5N30T',
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    test_path = find_file(manual_dir, TEST_FILE)
    if test_path is None:
      raise FileNotFoundError(
          f'{TEST_FILE} (or {TEST_FILE}.gz) not found in the manual directory {manual_dir}. '
          + self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip())
    train_path = find_file(manual_dir, TRAIN_FILE)
    test_rows = list(read_rows(test_path))
    seed = self.builder_config.split_seed
    if train_path is not None:
      validation, test = split_rows(len(test_rows), (0.5, 0.5), seed)
      mode = f'train = {TRAIN_FILE}; validation/test = {TEST_FILE} split 1:1 (seed {seed})'
      splits = dict(train=self._generate_examples(read_rows(train_path)))
    else:
      train, validation, test = split_rows(len(test_rows), (0.6, 0.2, 0.2), seed)
      mode = (f'only {TEST_FILE} present: it is split 60/20/20 into train/validation/test '
              f'(seed {seed}); not the paper\'s split, which trains on {TRAIN_FILE}')
      splits = dict(train=self._generate_examples(test_rows[i] for i in train))
    log.warning('census_income_kdd: %s', mode)
    self.info.metadata['split'] = mode
    splits.update(validation=self._generate_examples(test_rows[i] for i in validation),
                  test=self._generate_examples(test_rows[i] for i in test))
    return splits

  def _generate_examples(self, rows):
    for lineno, row in rows:
      yield lineno, dict(row, source_line=lineno, **labels(row))

"""Input errors that name the file: no data rows, and labels outside their tower's classes,
raised when the data is loaded, before any training."""

import os

import numpy as np
import pytest

from mmoe_jax import data as data_lib
from mmoe_jax.config import validate
from mmoe_jax.training import train_lib

# One row of configs/mmoe.py's 20 input fields; clk and buy (the labels) first.
OTHER_COLUMNS = 'p1,a1,c1,cp1,cu1,b1,u1,s1,g1,1,1,1,1,1,1,t1|t2,b1,5'
HEADER = ('clk,buy,pid,adgroup_id,cate_id,campaign_id,customer,brand,user_id,cms_segid,'
          'cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,occupation,'
          'new_user_class_level,tag_category_list,tag_brand_list,price\n')


def rows(*labels):
  return ''.join(f'{clk},{buy},{OTHER_COLUMNS}\n' for clk, buy in labels)


def write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


@pytest.fixture
def config(tiny_config, tmp_path):
  tiny_config.train_input_path = write(tmp_path, 'train.csv', rows((1, 0), (0, 0), (1, 1)))
  tiny_config.eval_input_path = write(tmp_path, 'eval.csv', rows((0, 0), (1, 1)))
  return tiny_config


@pytest.mark.parametrize('text, with_header', [('', False), (HEADER, True), ('\n\n', False)])
def test_file_without_data_rows_is_an_error_before_training(config, tmp_path, text, with_header):
  config.data_config.with_header = with_header
  if with_header:  # the train file needs its header too
    config.train_input_path = write(tmp_path, 'train_h.csv', HEADER + rows((1, 0)))
  config.eval_input_path = write(tmp_path, 'empty.csv', text)
  with pytest.raises(ValueError, match=rf"^eval_input_path: '{config.eval_input_path}' has no "
                                       'data rows$'):
    train_lib.train_and_evaluate(config)
  assert not os.path.exists(os.path.join(config.model_dir, 'checkpoints'))
  config.train_input_path, config.eval_input_path = config.eval_input_path, ''
  with pytest.raises(ValueError, match=r'^train_input_path: .* has no data rows$'):
    data_lib.datasets(validate(config))


def test_every_row_skipped_is_an_error(config, tmp_path):
  config.data_config.ignore_error = True
  config.eval_input_path = write(tmp_path, 'bad.csv', 'x,0,' + OTHER_COLUMNS + '\n')
  with pytest.raises(ValueError, match=r"eval_input_path: .* has no data rows; all 1 rows were "
                                       r'malformed and skipped \(ignore_error\)'):
    data_lib.datasets(validate(config))


def test_empty_file_among_others_is_logged_not_an_error(config, tmp_path):
  empty = write(tmp_path, 'empty.csv', '')
  logs = []
  data = data_lib.load(f'{config.train_input_path},{empty}', validate(config), log=logs.append)
  assert data.num_rows == 3 and f'{empty}: no data rows' in logs


def test_glob_matching_nothing_names_the_pattern(config, tmp_path):
  config.eval_input_path = f'{tmp_path}/nothing/*.csv'
  with pytest.raises(FileNotFoundError, match=r"no file matches input path '.*/nothing/\*\.csv'"):
    data_lib.datasets(validate(config))


@pytest.mark.parametrize('label', ['2', '-1', '0.5'])
def test_binary_tower_takes_only_0_and_1(config, tmp_path, label):
  # Line 3 of the eval file (the header is line 1) holds the first bad buy label.
  config.data_config.with_header = True
  config.data_config.input_fields[1].input_type = 'FLOAT'  # parses 0.5: the check refuses it
  config.train_input_path = write(tmp_path, 'train_h.csv', HEADER + rows((1, 0)))
  config.eval_input_path = write(tmp_path, 'eval_h.csv', HEADER + rows((1, 1), (0, label),
                                                                       (0, 3)))
  shown = f'{float(label):g}'
  with pytest.raises(ValueError, match=rf"^{config.eval_input_path}:3: label field 'buy': "
                                       rf"{shown} is not a class of tower 'cvr', which takes "
                                       r'0 or 1$'):
    data_lib.datasets(validate(config))


def test_multiclass_tower_takes_integers_below_num_class(config, tmp_path):
  config.data_config.input_fields[1].input_type = 'INT32'
  config.model_config.mmoe.task_towers[1].update(num_class=3, metrics_set=())
  config.train_input_path = write(tmp_path, 'train3.csv', rows((1, 0), (0, 2), (1, 1)))
  train, _, _ = data_lib.datasets(validate(config))
  assert train.labels['buy'].tolist() == [0, 2, 1]
  config.train_input_path = write(tmp_path, 'train4.csv', rows((1, 0), (0, 2), (1, 3)))
  with pytest.raises(ValueError, match=r"train4\.csv:3: label field 'buy': 3 is not a class of "
                                       r"tower 'cvr', which takes an integer in \[0, 3\)"):
    data_lib.datasets(validate(config))


def test_regression_tower_takes_any_label(config, tmp_path):
  config.data_config.input_fields[1].input_type = 'FLOAT'
  config.model_config.mmoe.task_towers[1].update(loss_type='L2_LOSS', metrics_set=())
  config.train_input_path = write(tmp_path, 'train_gmv.csv', rows((1, 2.5), (0, -7)))
  train, _, _ = data_lib.datasets(validate(config))
  np.testing.assert_array_equal(train.labels['buy'], np.float32([2.5, -7]))


def test_label_check_after_skipped_rows_names_the_kept_row(config, tmp_path):
  config.data_config.ignore_error = True
  config.train_input_path = write(tmp_path, 'train_skip.csv',
                                  'x,0,' + OTHER_COLUMNS + '\n' + rows((1, 0), (2, 0)))
  with pytest.raises(ValueError, match=r"train_skip\.csv: data row 2 of those kept after "
                                       r"skipping 1 malformed rows: label field 'clk': 2"):
    data_lib.datasets(validate(config))

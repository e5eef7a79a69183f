"""Real multi-task data from ../shared/data, read through the same CSV path as any user file."""

import os

import numpy as np
import pytest

from mmoe_jax.config import complete, validate
from mmoe_jax.training import train_lib
from mmoe_jax.training import evaluation
from conftest import SHARED_DATA

ALI_CCP = os.path.join(SHARED_DATA, 'ali_ccp_sample')
pytestmark = pytest.mark.skipif(not os.path.isdir(ALI_CCP),
                                reason=f'needs the Ali-CCP sample in {ALI_CCP}')

SPARSE = ('101', '121', '122', '124', '125', '126', '127', '128', '129', '205', '206', '207',
          '210', '216', '508', '509', '702', '853', '301', '109_14', '110_14', '127_14', '150_14')
DENSE = ('D109_14', 'D110_14', 'D127_14', 'D150_14', 'D508', 'D509', 'D702', 'D853')


def ali_ccp_config(model_dir):
  """Ali-CCP's header CSV: 2 labels, 23 int-encoded fields (hashed), 8 dense values."""
  fields = ([dict(input_name=n, input_type='INT32') for n in ('click', 'purchase')]
            + [dict(input_name=n, input_type='STRING') for n in SPARSE]
            + [dict(input_name=n, input_type='DOUBLE') for n in DENSE])
  features = ([dict(input_names=(n,), feature_type='IdFeature', embedding_dim=4,
                    hash_bucket_size=1000) for n in SPARSE]
              + [dict(input_names=(n,), feature_type='RawFeature') for n in DENSE])
  tower = lambda name, label: dict(tower_name=name, label_name=label, dnn=dict(hidden_units=(8,)))
  return complete(dict(
      train_input_path=os.path.join(ALI_CCP, 'ali_ccp_train_sample.csv'),
      eval_input_path=os.path.join(ALI_CCP, 'ali_ccp_test_sample.csv'),
      model_dir=model_dir,
      train_config=dict(num_steps=6, save_checkpoints_steps=3, log_step_count_steps=3,
                        optimizer_config=dict(adam_optimizer=dict(
                            learning_rate=dict(constant_learning_rate=dict(learning_rate=0.01))))),
      data_config=dict(input_fields=tuple(fields), label_fields=('click', 'purchase'),
                       with_header=True, batch_size=32, eval_batch_size=64),
      feature_configs=tuple(features),
      model_config=dict(
          model_class='MMoE',
          feature_groups=(dict(group_name='all', feature_names=SPARSE + DENSE),),
          mmoe=dict(expert_dnn=dict(hidden_units=(16,)), num_expert=2,
                    task_towers=(tower('ctr', 'click'), tower('cvr', 'purchase')))),
  ))


def test_ali_ccp_sample_trains_evaluates_and_predicts(tmp_path):
  config = ali_ccp_config(str(tmp_path / 'model'))
  result = train_lib.train_and_evaluate(config)
  assert result['step'] == 6
  assert 0 <= result['auc_ctr'] <= 1 and 0 <= result['auc_cvr'] <= 1
  assert 'oracle_auc_ctr' not in result  # real data: no known probabilities
  again = evaluation.evaluate_checkpoint(config)
  assert again['auc_ctr'] == pytest.approx(result['auc_ctr'])
  predictions = evaluation.predict_checkpoint(config, os.path.join(ALI_CCP, 'ali_ccp_val_sample.csv'))
  assert predictions['probs_ctr'].shape == (50,)
  assert np.all((predictions['probs_cvr'] > 0) & (predictions['probs_cvr'] < 1))


def test_ali_ccp_columns_parse_as_declared(tmp_path):
  from mmoe_jax import data as data_lib
  config = validate(ali_ccp_config(str(tmp_path / 'model')))
  columns = data_lib.load(config.train_input_path, config)
  assert columns.num_rows == 100
  assert columns.labels['click'].sum() == 7 and columns.labels['purchase'].sum() == 1
  assert columns.features['D109_14'].dtype == np.float32
  np.testing.assert_allclose(columns.features['D109_14'][0], 0.4734, rtol=1e-6)
  assert columns.features['101'].dtype == np.int32 and columns.features['101'].max() < 1000

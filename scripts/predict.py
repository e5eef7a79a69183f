r"""Writes the latest checkpoint's predictions for a CSV (in the config's format).

  python scripts/predict.py --config=configs/mmoe.py --input_path=rows.csv --output_path=out.csv

The output has one row per input row, in input order, with EasyRec's prediction
columns: probs_<tower> (CLASSIFICATION) and y_<tower> (L2_LOSS, or the class of a
multi-class tower, whose class probabilities are probs_<tower>_<k>). The model is built
from the config that model_dir records, unless --use_given_config (as evaluate.py).
"""

from absl import flags

from mmoe_jax import cli
from mmoe_jax.training import evaluation

INPUT_PATH = flags.DEFINE_string('input_path', None, 'CSV to predict, in the config\'s format.')
OUTPUT_PATH = flags.DEFINE_string('output_path', None, 'Where to write the predictions CSV.')
USE_GIVEN_CONFIG = cli.define_use_given_config_flag()


def main():
  predictions = evaluation.predict_checkpoint(cli.CONFIG.value, INPUT_PATH.value,
                                              use_given_config=USE_GIVEN_CONFIG.value)
  evaluation.write_predictions(predictions, OUTPUT_PATH.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['input_path', 'output_path'])
  cli.run(main)

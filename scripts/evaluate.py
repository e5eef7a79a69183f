r"""Evaluates the latest checkpoint in model_dir and prints the metrics as one JSON line.

  python scripts/evaluate.py --config=configs/mmoe.py [--input_path=test.csv]

The model is built from the config that model_dir records (the one it was trained with);
the log lists where --config differs. --use_given_config builds it from --config instead.
"""

import json

from absl import flags

from mmoe_jax import cli
from mmoe_jax.training import evaluation

INPUT_PATH = flags.DEFINE_string('input_path', None, 'CSV to evaluate on (default: the '
                                 "config's eval_input_path).")
USE_GIVEN_CONFIG = cli.define_use_given_config_flag()


def main():
  result = evaluation.evaluate_checkpoint(cli.CONFIG.value, INPUT_PATH.value,
                                          use_given_config=USE_GIVEN_CONFIG.value)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  cli.run(main)

r"""Evaluates the latest checkpoint in model_dir and prints the metrics as one JSON line.

  python scripts/evaluate.py --config=configs/mmoe.py [--input_path=test.csv]
"""

import json

from absl import flags

from mmoe_jax import cli
from mmoe_jax.training import evaluation

INPUT_PATH = flags.DEFINE_string('input_path', None, 'CSV to evaluate on (default: the '
                                 "config's eval_input_path).")


def main():
  print(json.dumps(evaluation.evaluate_checkpoint(cli.CONFIG.value, INPUT_PATH.value)), flush=True)


if __name__ == '__main__':
  cli.run(main)

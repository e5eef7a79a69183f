"""Data past memory: files stream into the cache batch by batch, and many files are one index
over their caches (no concatenated copy) that gives the same batches as one file."""
import os

import numpy as np

from mmoe_jax.data import columnar, csv_input
from mmoe_jax.training import input_pipeline
from test_csv_input import data_config, feature_configs, write

# 60 rows whose tag counts (0-3) vary, so record batches and files differ in tag width.
LINES = [f'{i % 2},u{i},{"|".join("abc"[:i % 4])},{i},{i % 12},{i / 2}\n' for i in range(60)]


def load(paths, cache_dir):
  return csv_input.load_csv(paths, data_config(), feature_configs(), str(cache_dir),
                            log=lambda _: None)


def cache_files(cache_dir):
  (entry,) = [e for e in os.listdir(cache_dir)]
  return {name: open(os.path.join(cache_dir, entry, name), 'rb').read()
          for name in os.listdir(os.path.join(cache_dir, entry)) if name.endswith('.npy')}


def test_file_larger_than_the_read_batch_streams_into_the_same_cache(tmp_path, monkeypatch):
  path = write(tmp_path / 'a.csv', ''.join(LINES))
  load(path, tmp_path / 'whole')
  chunks = []
  transform = columnar.transform_batch
  monkeypatch.setattr(columnar, 'transform_batch',
                      lambda batch, *a: chunks.append(batch.num_rows) or transform(batch, *a))
  monkeypatch.setattr(csv_input, '_BLOCK_BYTES', 128)  # a few lines per record batch
  load(path, tmp_path / 'streamed')
  assert len(chunks) > 5 and sum(chunks) == 60 and max(chunks) < 20
  # Byte for byte: same dtypes, shapes (tags padded to the widest batch) and values.
  assert cache_files(tmp_path / 'streamed') == cache_files(tmp_path / 'whole')


def test_several_files_give_the_batches_of_one_file(tmp_path):
  one = load(write(tmp_path / 'all.csv', ''.join(LINES)), tmp_path / 'cache')
  (tmp_path / 'parts').mkdir()
  # Unequal parts; the second (row 4) has no tags at all (L = 1), the last is empty.
  bounds = [0, 4, 5, 33, 60, 60]
  for k in range(5):
    write(tmp_path / 'parts' / f'p{k}.csv', ''.join(LINES[bounds[k]:bounds[k + 1]]))
  many = load(f'{tmp_path}/parts/*.csv', tmp_path / 'cache')
  assert many.num_rows == one.num_rows == 60
  # One index over the files' memory maps, not a concatenated copy.
  assert all(isinstance(v, columnar.Rows) for v in (*many.features.values(),
                                                   *many.labels.values()))
  assert many.features['tags'].shape == one.features['tags'].shape == (60, 3)
  sampler = input_pipeline.BatchSampler(60, 16, seed=3)
  for step in range(8):  # across epochs: rows from every file, in shuffled order
    got, want = (input_pipeline.batch(d, sampler.indices(step)) for d in (many, one))
    for kind in ('features', 'labels'):
      for k in want[kind]:
        assert got[kind][k].dtype == want[kind][k].dtype
        np.testing.assert_array_equal(got[kind][k], want[kind][k], err_msg=k)
  for kind in ('features', 'labels'):
    for k, v in getattr(one, kind).items():
      np.testing.assert_array_equal(np.asarray(getattr(many, kind)[k]), v)
  assert input_pipeline.nbytes(many) == input_pipeline.nbytes(one)
  for rows in (slice(0, 60), slice(3, 40), slice(33, 34), slice(50, 70), slice(10, 5)):
    np.testing.assert_array_equal(many.features['tags'][rows], one.features['tags'][rows])
  # What training reads of all labels (the L2_LOSS baseline of cadence.DivergenceWarning).
  np.testing.assert_array_equal(many.labels['clk'].astype(np.float64), one.labels['clk'])

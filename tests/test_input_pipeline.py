"""Both input modes feed the step exactly the batches of the plain step loop."""

import jax
import numpy as np
import pytest

from mmoe_jax import data as data_lib
from mmoe_jax.config import ConfigError, validate
from mmoe_jax.training import input_pipeline, train_lib
from mmoe_jax.training import trainer as trainer_lib


def _setup(config):
  config = validate(config)
  columns = data_lib.load(data_lib.input_paths(config)[0], config)
  sampler = input_pipeline.BatchSampler(columns.num_rows, config.data_config.batch_size,
                                        config.seed)
  trainer = trainer_lib.Trainer(config, input_pipeline.batch(columns, np.arange(2)))
  return config, columns, sampler, trainer


def _run(train_input, state, start, stop):
  for steps in train_input.chunks(start, stop):
    state, metrics = train_input.run(state, steps)
  train_input.close()
  return state, metrics


def test_device_and_streaming_follow_the_step_loop(tiny_config):
  config, columns, sampler, trainer = _setup(tiny_config)
  state = trainer.init_state()
  for step in range(12):
    state, metrics = trainer.train_step(state, input_pipeline.batch(columns, sampler.indices(step)))
  expected = jax.device_get((state, metrics))

  streaming = input_pipeline.Streaming(trainer, columns, sampler)
  device = input_pipeline.DeviceResident(trainer, columns, sampler, steps_per_dispatch=5)
  for train_input in (streaming, device):
    # 12 steps: chunks [0, 5), [5, 10), [10, 12) in device mode, so a remainder too.
    got = jax.device_get(_run(train_input, trainer.init_state(), 0, 12))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 got, expected)
    assert int(got[0]['step']) == 12


def test_device_chunks_end_on_multiples_of_steps_per_dispatch(tiny_config):
  config, columns, sampler, trainer = _setup(tiny_config)
  device = input_pipeline.DeviceResident(trainer, columns, sampler, steps_per_dispatch=5)
  assert [(r.start, r.stop) for r in device.chunks(3, 17)] == [(3, 5), (5, 10), (10, 15),
                                                               (15, 17)]
  np.testing.assert_array_equal(device.indices(range(2, 4)),
                                np.stack([sampler.indices(2), sampler.indices(3)]))


def test_streaming_stops_its_thread_on_close(tiny_config):
  config, columns, sampler, trainer = _setup(tiny_config)
  streaming = input_pipeline.Streaming(trainer, columns, sampler)
  steps = streaming.chunks(0, 1000)  # far more than the buffer holds
  next(steps)
  streaming.close()
  assert streaming._thread is None


def test_steps_per_dispatch_divides_log_and_checkpoint_intervals(tiny_config):
  config = validate(tiny_config)  # log every 5 steps, save every 10
  assert input_pipeline.steps_per_dispatch(config.train_config) == 5
  tiny_config.train_config.update(log_step_count_steps=1000, save_checkpoints_steps=3000)
  assert input_pipeline.steps_per_dispatch(validate(tiny_config).train_config) == 100
  tiny_config.train_config.steps_per_dispatch = 7
  with pytest.raises(ConfigError, match='train_config.steps_per_dispatch'):
    validate(tiny_config)


def test_auto_mode_puts_a_small_cache_on_the_device(tiny_config):
  config, columns, _, _ = _setup(tiny_config)
  assert input_pipeline.resolve_mode('auto', columns) == 'device'
  assert input_pipeline.resolve_mode('streaming', columns) == 'streaming'
  tiny_config.data_config.input_mode = 'disk'
  with pytest.raises(ConfigError, match='data_config.input_mode'):
    validate(tiny_config)


def test_auto_mode_streams_a_cache_past_the_device_budget_and_says_so(tiny_config, monkeypatch,
                                                                      caplog):
  _, columns, _, _ = _setup(tiny_config)
  size = input_pipeline.nbytes(columns)
  caplog.set_level('INFO', logger='mmoe_jax')
  # Half the device memory is the budget: a cache of exactly that size fits, one byte more not.
  monkeypatch.setattr(input_pipeline, 'device_memory_bytes', lambda: 2 * size)
  assert input_pipeline.resolve_mode('auto', columns) == 'device'
  monkeypatch.setattr(input_pipeline, 'device_memory_bytes', lambda: 2 * size - 2)
  assert input_pipeline.resolve_mode('auto', columns) == 'streaming'
  assert caplog.messages[-1].startswith('input_mode auto: streaming (the training cache takes ')


def test_streaming_resume_equals_an_uninterrupted_device_run(tiny_config, tmp_path):
  """Stop a streaming run at step 10, resume it to 20: the same as 20 device-resident steps."""
  tiny_config.data_config.input_mode = 'streaming'
  tiny_config.train_config.num_steps = 10
  train_lib.train_and_evaluate(tiny_config)
  tiny_config.train_config.num_steps = 20
  resumed = train_lib.train_and_evaluate(tiny_config)

  import mmoe
  straight = mmoe.get_config('tiny')
  straight.model_dir = str(tmp_path / 'straight')
  straight.data_config.input_mode = 'device'
  uninterrupted = train_lib.train_and_evaluate(straight)
  assert resumed['step'] == uninterrupted['step'] == 20
  for key in ('auc_ctr', 'auc_cvr'):
    assert resumed[key] == pytest.approx(uninterrupted[key], abs=1e-6)

"""tfrewind.slim and the channel analysis behind it (and behind tfrewind.flops)."""

import numpy as np
import pytest

import tf_keras as keras
import tfrewind
from tfrewind.pruning import channels, sparsity


def _channel_model(name):
  model = tfrewind.prunable(tfrewind.build_model(name), structure="channel")
  # BatchNorm with non-trivial statistics, so that a channel left un-silenced shows.
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.normal(1, 0.3, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                         rng.uniform(0.5, 2, n)])
  return model


def _alive(masks, name):
  m = masks[f"{name}/kernel:0"]
  return m.reshape(-1, m.shape[-1]).max(0) > 0


def _conv_params(masks, name, n_in, n_out):
  kh, kw = masks[f"{name}/kernel:0"].shape[:2]
  return kh * kw * n_in * n_out


def _expected_resnet_params(model, masks, depth=20, width=16):
  """Parameters of the slim ResNet v1, counted by hand from the masks.

  Inside a block, conv1's pruned channels go (with bn1 and conv2's input rows);
  a stage's channel goes only if the stem/shortcut and every conv2 of the stage prune it.
  """
  n = (depth - 2) // 6
  total, stream_in = 0, 3
  bn = lambda c: 4 * c
  for stage, filters in enumerate([width, 2 * width, 4 * width]):
    first = "stem_conv" if stage == 0 else f"stage{stage + 1}_block1_shortcut"
    writers = [first] + [f"stage{stage + 1}_block{b + 1}_conv2" for b in range(n)]
    stream = int(np.logical_or.reduce([_alive(masks, w) for w in writers]).sum()) or 1
    total += _conv_params(masks, first, stream_in, stream) + bn(stream)
    for b in range(n):
      name = f"stage{stage + 1}_block{b + 1}"
      inner = int(_alive(masks, f"{name}_conv1").sum()) or 1
      reads = stream_in if b == 0 and stage > 0 else stream  # block 1 reads the last stage
      total += _conv_params(masks, f"{name}_conv1", reads, inner) + bn(inner)
      total += _conv_params(masks, f"{name}_conv2", inner, stream) + bn(stream)
    stream_in = stream
  return total + stream_in * 10 + 10


def _expected_wrn_params(model, masks, depth=16, k=8):
  """WRN: the stem's channels (silenced by the first block's bn1) and each conv1's go."""
  n = (depth - 4) // 6
  stem = int(_alive(masks, "stem_conv").sum())
  total, stream_in = _conv_params(masks, "stem_conv", 3, stem), stem
  for group, filters in enumerate([16 * k, 32 * k, 64 * k]):
    for b in range(n):
      name = f"group{group + 1}_block{b + 1}"
      inner = int(_alive(masks, f"{name}_conv1").sum()) or 1
      total += 4 * stream_in  # bn1
      total += _conv_params(masks, f"{name}_conv1", stream_in, inner) + 4 * inner
      total += _conv_params(masks, f"{name}_conv2", inner, filters)
      if b == 0:
        total += _conv_params(masks, f"{name}_shortcut", stream_in, filters)
      stream_in = filters
  return total + 4 * stream_in + stream_in * 10 + 10


@pytest.mark.parametrize("name,densities,expected", [
    ("resnet20", (0.7, 0.5, 0.25), _expected_resnet_params),
    ("wrn16_8", (0.5, 0.25), _expected_wrn_params)])
@pytest.mark.slow
def test_slim_equals_masked_and_counts_only_remaining_channels(name, densities, expected):
  model = _channel_model(name)
  x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
  for density in densities:
    tfrewind.prune(model, density, structure="channel")
    small = tfrewind.slim(model)
    assert not any(isinstance(l, (sparsity.Masked, sparsity.ChannelNorm)) for l in small.layers)
    masked_out = model(x, training=False).numpy()
    np.testing.assert_allclose(small(x, training=False).numpy(), masked_out,
                               rtol=1e-5, atol=1e-5 * np.abs(masked_out).max())
    assert small.count_params() == expected(model, tfrewind.get_masks(model))
    assert small.count_params() < tfrewind.strip(model).count_params()
    # flops counts exactly what slim computes: a pruned channel of a stage that only some
    # writers prune stays, and its zero weights cost; the sparse count leaves those out.
    f = tfrewind.flops(model)
    assert f["count"] == "slim"
    assert tfrewind.flops(small)["dense_macs"] == f["pruned_macs"] < f["dense_macs"]
    assert _nonzero_macs(small) == tfrewind.flops(model, count="sparse")["pruned_macs"]


def _nonzero_macs(model):
  return sum(int(np.count_nonzero(l.kernel.numpy())) * int(np.prod(l.output_shape[1:-1]))
             for l in model.layers if hasattr(l, "kernel"))


def _stage2_writers(n=3):
  return ["stage2_block1_shortcut"] + [f"stage2_block{b + 1}_conv2" for b in range(n)]


def _kill(model, layer_channels):
  masks = tfrewind.get_masks(model)
  for layer, channel in layer_channels:
    masks[f"{layer}/kernel:0"][..., channel] = 0
  sparsity.set_masks(model, list(masks.values()))


def test_a_stage_channel_goes_only_when_every_writer_of_the_stage_prunes_it():
  model = _channel_model("resnet20")
  x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype(np.float32)
  _kill(model, [(w, 5) for w in _stage2_writers()[:-1]])  # the last block still writes 5
  assert channels.plan(model).removed() == 0
  assert tfrewind.slim(model).get_layer("stage2_block2_conv1").kernel.shape[2] == 32
  _kill(model, [(_stage2_writers()[-1], 5)])
  plan = channels.plan(model)
  assert plan.removed() == 4  # channel 5 of the shortcut and of 3 conv2s
  small = tfrewind.slim(model)
  assert small.get_layer("stage2_block1_shortcut").kernel.shape[3] == 31
  for reader in ["stage2_block2_conv1", "stage2_block3_conv1",
                 "stage3_block1_conv1", "stage3_block1_shortcut"]:
    assert small.get_layer(reader).kernel.shape[2] == 31, reader
  np.testing.assert_allclose(small(x, training=False), model(x, training=False), rtol=1e-5,
                             atol=1e-5)


def test_flops_pruned_channel_removes_its_share_of_the_next_layer():
  model = _channel_model("resnet20")
  dense = tfrewind.flops(model)["pruned_macs"]
  _kill(model, [("stage1_block1_conv1", 7)])
  # The channel's own 3x3x16 filter and conv2's 3x3 input rows for it, at 32x32 positions.
  assert dense - tfrewind.flops(model)["pruned_macs"] == 32 * 32 * 3 * 3 * 16 * 2


def test_channels_touching_unknown_layers_or_outputs_are_kept():
  inputs = keras.Input((6, 6, 3))
  a = keras.layers.Conv2D(4, 3, use_bias=False, name="a")(inputs)
  b = keras.layers.Conv2D(4, 3, use_bias=False, name="b")(a)
  flat = keras.layers.Flatten()(keras.layers.ReLU()(b))
  model = tfrewind.prunable(keras.Model(inputs, keras.layers.Dense(3, name="out")(flat)),
                            structure="channel")
  _kill(model, [("a", 1), ("b", 2)])
  plan = channels.plan(model)
  assert plan.outputs["a"].tolist() == [True, False, True, True]  # read by conv b only
  assert plan.outputs["b"].all()  # read through Flatten: kept (its weights are zeros)
  assert plan.outputs["out"].all()  # the model's output
  small = tfrewind.slim(model)
  x = np.random.default_rng(3).normal(size=(2, 6, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(small(x), model(x), rtol=1e-5, atol=1e-6)
  assert small.get_layer("b").kernel.shape == (3, 3, 3, 4)


def test_a_conv_bias_keeps_its_channel_alive():
  inputs = keras.Input((6, 6, 3))
  a = keras.layers.Conv2D(4, 3, name="a")(inputs)
  out = keras.layers.Dense(2, name="out")(keras.layers.GlobalAveragePooling2D()(
      keras.layers.Conv2D(4, 1, name="b")(a)))
  model = tfrewind.prunable(keras.Model(inputs, out), structure="channel")
  model.layers[1].layer.bias.assign([0.0, 0.5, 0.0, 0.0])
  _kill(model, [("a", 0), ("a", 1)])
  assert channels.plan(model).inputs["b"].tolist() == [False, True, True, True]


def test_slim_rejects_subclassed_and_nested_models():
  inner = keras.Sequential([keras.layers.Conv2D(2, 3, input_shape=(6, 6, 3))])
  outer = keras.Sequential([inner, keras.layers.Flatten(), keras.layers.Dense(2)])
  with pytest.raises(ValueError, match="nests models"):
    tfrewind.slim(outer)

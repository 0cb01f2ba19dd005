"""Pruned networks that really run faster (#24, in part): MACs that the slim network computes,
and N:M sparsity in TF-MOT's layout."""

import numpy as np
import pytest
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_utils

import tf_keras as keras
import tfrewind
from tfrewind.errors import ConfigError
from tfrewind.pruning import channels
from tfrewind.pruning import masks as masks_lib
from tfrewind.pruning import sparsity


@pytest.mark.parametrize("name,structure,prune", [
    ("resnet20", "channel", dict(density=0.5)),
    ("resnet20", "channel_group_mean", dict(density=0.5)),
    pytest.param("resnet56", "structured_b", dict(density=1.0, level=2),
                 marks=pytest.mark.slow)])
def test_flops_of_a_channel_prune_are_the_macs_its_slim_network_computes(name, structure, prune):
  keras.utils.set_random_seed(0)
  model = tfrewind.prunable(tfrewind.build_model(name), structure=structure)
  tfrewind.prune(model, structure=structure, **prune)
  masked = tfrewind.flops(model)
  small = tfrewind.flops(tfrewind.slim(model))
  assert masked["count"] == "slim"
  assert masked["pruned_macs"] == small["dense_macs"] < masked["dense_macs"]
  # The sparse count is lower: zero weights of kept stage channels cost nothing there.
  assert tfrewind.flops(model, count="sparse")["pruned_macs"] <= masked["pruned_macs"]


def test_unstructured_macs_stay_the_theoretical_sparse_count():
  keras.utils.set_random_seed(0)
  model = tfrewind.prunable(tfrewind.build_model("resnet20"))
  tfrewind.prune(model, 0.2)
  f = tfrewind.flops(model)
  assert f["count"] == "sparse" and f["pruned_macs"] < f["dense_macs"] / 2


def test_n_m_keeps_exactly_n_of_every_m_input_weights_and_tf_mot_accepts_it():
  keras.utils.set_random_seed(1)
  model = tfrewind.prunable(tfrewind.build_model("resnet20"), structure="n_m")
  achieved = tfrewind.prune(model, 0.5, structure="n_m", n_m="2:4")
  stripped = tfrewind.strip(model)
  checked = 0
  for layer in stripped.layers:
    if not hasattr(layer, "kernel"):
      continue
    kernel = layer.kernel.numpy()
    if kernel.shape[-2] % 4:  # the 3-channel stem stays dense, as TF-MOT leaves it
      assert np.count_nonzero(kernel) == kernel.size, layer.name
      continue
    groups = np.moveaxis(kernel, -1, 0).reshape(-1, 4)
    assert (np.count_nonzero(groups, axis=1) == 2).all(), layer.name
    assert pruning_utils.is_pruned_m_by_n(layer.kernel, m_by_n=(2, 4))
    checked += 1
  assert checked == 21  # 18 block convs, 2 projection shortcuts, the classifier
  stem = 3 * 3 * 3 * 16
  total = sum(m.size for m in sparsity.get_masks(model).values())
  assert achieved == ((total - stem) / 2 + stem) / total


def test_n_m_keeps_the_largest_and_never_revives():
  w = np.array([[0.1, -0.9, 0.5, 0.2, 3.0, 1.0, -2.0, 0.0]]).T  # (8, 1): C_IN 8, C_OUT 1
  (mask,) = masks_lib.n_m_masks([w], 2, 4)
  assert mask[:, 0].tolist() == [0, 1, 1, 0, 1, 0, 1, 0]
  old = np.ones_like(w, np.float32)
  old[1] = 0  # already pruned: the group keeps its next two
  (mask,) = masks_lib.n_m_masks([w], 2, 4, [old])
  assert mask[:, 0].tolist() == [0, 0, 1, 1, 1, 0, 1, 0]
  tie = np.ones((4, 1))
  assert masks_lib.n_m_masks([tie], 1, 4)[0][:, 0].tolist() == [1, 0, 0, 0]
  for bad in ("4:4", "2", "a:b", "0:4"):
    with pytest.raises(ConfigError, match="n_m"):
      masks_lib.parse_n_m(bad)


def _positions(layer):
  return int(np.prod(layer.output_shape[1:-1])) if len(layer.output_shape) > 2 else 1


def test_target_macs_lands_within_one_weight_unstructured():
  keras.utils.set_random_seed(2)
  model = tfrewind.prunable(tfrewind.build_model("resnet20"))
  dense = tfrewind.flops(model)["dense_macs"]
  tfrewind.prune(model, 0.3, tfrewind.PruneSpec(target="macs"))
  got = tfrewind.flops(model)["pruned_macs"]
  one_weight = max(_positions(w) for w in sparsity.wrappers(model))  # a stage-1 conv weight
  assert abs(got - 0.3 * dense) <= one_weight
  with pytest.raises(ConfigError, match="resolved by tfrewind.prune"):
    sparsity.prune(model, 0.2, tfrewind.PruneSpec(target="macs"))


def test_target_macs_channel_is_the_closest_threshold():
  from tfrewind.pruning.spec import PruneSpec  # pylint: disable=g-import-not-at-top
  from tfrewind.pruning import target  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(3)
  model = tfrewind.prunable(tfrewind.build_model("resnet20"), structure="channel")
  dense = tfrewind.flops(model)["dense_macs"]
  spec = PruneSpec(structure="channel", target="macs")
  chosen = target.weight_density(model, 0.4, spec)
  pvars = sparsity._pruning_vars(model)  # pylint: disable=protected-access

  def macs_at(d):
    for (_, mask, _), m in zip(pvars, sparsity.new_masks(model, d, structure="channel")):
      mask.assign(m)
    value = tfrewind.flops(model)["pruned_macs"]
    for _, mask, _ in pvars:
      mask.assign(np.ones(mask.shape, np.float32))
    return value

  best = abs(macs_at(chosen) - 0.4 * dense)
  assert all(best <= abs(macs_at(d) - 0.4 * dense) for d in np.linspace(0.2, 0.7, 26))
  assert best <= 0.02 * dense


def _group_model(name, structure="channel_group", **kw):
  keras.utils.set_random_seed(4)
  return tfrewind.prunable(tfrewind.build_model(name, **kw), structure=structure)


def _user_model():
  """A residual Add, then Inception's and DenseNet's joins: branches concatenated and read
  by a conv, and a concatenation normalised by one BatchNorm across its parts."""
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
  x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="a_bn")(x))
  y = keras.layers.Conv2D(8, 3, padding="same", name="b")(x)
  y = keras.layers.BatchNormalization(name="b_bn")(y)
  x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
  branches = [keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"{n}_bn")(
      keras.layers.Conv2D(w, k, padding="same", name=n)(x))) for n, w, k in (("p", 6, 1),
                                                                             ("q", 10, 3))]
  joined = keras.layers.Concatenate(name="inception_join")(branches)
  z = keras.layers.Conv2D(12, 1, name="c")(joined)
  dense = keras.layers.Concatenate(name="dense_join")([x, z])  # DenseNet: features so far
  dense = keras.layers.ReLU()(keras.layers.BatchNormalization(name="dense_bn")(dense))
  x = keras.layers.Conv2D(9, 1, name="d")(dense)
  x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
  return keras.Model(inputs, keras.layers.Dense(5, name="out")(x))


@pytest.mark.parametrize("name", ["resnet20", "wrn16_8", "vgg11", "user",
                                  pytest.param("resnet50", marks=pytest.mark.slow)])
def test_channel_group_slim_computes_the_masked_outputs_and_its_macs_are_flops(name):
  if name == "user":
    keras.utils.set_random_seed(4)
    model, shape = tfrewind.prunable(_user_model(), structure="channel_group"), (4, 8, 8, 3)
  else:
    model = _group_model(name, **({"num_classes": 10} if name == "resnet50" else {}))
    shape = (2,) + tuple(model.input_shape[1:])
  # Trained-like BatchNorm statistics, so that a wrongly kept channel would show.
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.moving_mean.shape[0]
      layer.moving_mean.assign(np.random.default_rng(0).normal(0, 0.1, n).astype(np.float32))
      layer.beta.assign(np.random.default_rng(1).normal(0, 0.1, n).astype(np.float32))
  achieved = tfrewind.prune(model, 0.5, structure="channel_group")
  assert abs(achieved - 0.5) < 0.02
  small = tfrewind.slim(model)
  x = np.random.default_rng(2).normal(size=shape).astype(np.float32)
  want = model(x, training=False).numpy()
  assert np.abs(small(x, training=False).numpy() - want).max() <= 1e-5 * max(
      1.0, np.abs(want).max())
  assert tfrewind.flops(model)["pruned_macs"] == tfrewind.flops(small)["dense_macs"]
  assert small.count_params() < tfrewind.strip(model).count_params()


def test_a_residual_stage_channel_goes_from_every_writer_and_reader_at_once():
  model = _group_model("resnet20")
  tfrewind.prune(model, 0.3, structure="channel_group")
  masks = sparsity.get_masks(model)
  removed = 0
  for stage, width, writers, readers in (
      (1, 16, ["stem_conv"], ["stage2_block1_conv1", "stage2_block1_shortcut"]),
      (2, 32, ["stage2_block1_shortcut"], ["stage3_block1_conv1", "stage3_block1_shortcut"]),
      (3, 64, ["stage3_block1_shortcut"], [])):
    writers = writers + [f"stage{stage}_block{b}_conv2" for b in (1, 2, 3)]
    readers = readers + [f"stage{stage}_block{b}_conv1" for b in (2, 3)]
    dead = [~masks[f"{w}/kernel:0"].reshape(-1, width).any(axis=0) for w in writers]
    assert all(np.array_equal(d, dead[0]) for d in dead), stage
    for r in readers:
      assert np.array_equal(~masks[f"{r}/kernel:0"].any(axis=(0, 1, 3)), dead[0]), (stage, r)
    removed += int(dead[0].sum())
  assert removed > 0
  last = ~masks["stage3_block1_shortcut/kernel:0"].reshape(-1, 64).any(axis=0)
  assert np.array_equal(~masks["logits/kernel:0"].any(axis=1), last)  # the classifier's rows


def test_a_concatenate_lays_its_groups_side_by_side():
  keras.utils.set_random_seed(4)
  model = tfrewind.prunable(_user_model(), structure="channel_group")
  found = {tuple(g.writers): g for g in channels.groups(model) if g.prunable}
  assert found[("p",)].readers == [("c", 0)] and found[("q",)].readers == [("c", 6)]
  assert found[("c",)].readers == [("d", 8)] and found[("c",)].norms == [("dense_bn", 8)]
  assert ("d", 0) in found[("a", "b")].readers and ("dense_bn", 0) in found[("a", "b")].norms
  # One BatchNorm over two groups follows a writer of each, in channel order.
  assert {l.name: l.source for l in model.layers if hasattr(l, "source")}["dense_bn"] == "a,c"
  tfrewind.prune(model, 0.3, structure="channel_group")
  masks = sparsity.get_masks(model)
  plan = channels.plan(model)
  for writer, reader, offset in (("p", "c", 0), ("q", "c", 6), ("c", "d", 8)):
    dead = ~masks[f"{writer}/kernel:0"].reshape(-1, masks[f"{writer}/kernel:0"].shape[-1]).any(0)
    rows = ~masks[f"{reader}/kernel:0"].any(axis=(0, 1, 3))[offset:offset + dead.size]
    assert np.array_equal(rows, dead), writer
    assert np.array_equal(plan.inputs[reader][offset:offset + dead.size], ~dead), writer
  assert not plan.inputs["c"].all() and not plan.norms["dense_bn"].all()
  small = tfrewind.slim(model)
  x = np.random.default_rng(2).normal(size=(4, 8, 8, 3)).astype(np.float32)
  want = model(x, training=False).numpy()
  assert np.abs(small(x, training=False).numpy() - want).max() <= 1e-5 * max(
      1.0, np.abs(want).max())
  assert tfrewind.flops(model)["pruned_macs"] == tfrewind.flops(small)["dense_macs"]


def test_channel_group_mean_keeps_a_like_share_of_every_stage_where_raw_scores_empty_one():
  kept = {}
  for structure in ("channel_group", "channel_group_mean"):
    model = _group_model("resnet20", structure)
    tfrewind.prune(model, 0.25, structure=structure)
    plan = channels.plan(model)
    stages = [g for g in channels.groups(model) if len(g.writers) > 1]
    kept[structure] = [plan.outputs[g.writers[0]].sum() / g.width for g in stages]
  # He-initialised deep stages score lower: one raw threshold leaves stage 3 one channel.
  assert kept["channel_group"][2] == 1 / 64 and kept["channel_group"][0] == 1.0
  assert max(kept["channel_group_mean"]) - min(kept["channel_group_mean"]) <= 0.15
  assert min(kept["channel_group_mean"]) >= 0.3


def test_channel_group_names_a_layer_it_cannot_group():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, name="a")(inputs)
  x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
  model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
  with pytest.raises(ConfigError, match="'dw'"):
    tfrewind.prunable(model, structure="channel_group")

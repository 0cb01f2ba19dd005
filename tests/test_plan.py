"""tfrewind.plan: the method registry and each method's Retrain, exactly (no TensorFlow needed)."""

import dataclasses

import pytest

from tfrewind import hparams
from tfrewind import plan

N, K = 72000, 8000


@pytest.mark.parametrize("method,kwargs,expected", [
    ("finetune", {}, plan.Retrain(None, None, N)),
    ("finetune", dict(retrain_steps=4000), plan.Retrain(None, None, 4000)),
    ("weight_rewind", {}, plan.Retrain(K, K, N - K)),
    ("weight_rewind", dict(retrain_steps=20000), plan.Retrain(N - 20000, N - 20000, 20000)),
    ("weight_rewind_low_lr", {}, plan.Retrain(K, None, N - K)),
    ("weight_rewind_low_lr", dict(retrain_steps=20000), plan.Retrain(N - 20000, None, 20000)),
    ("lr_rewind", {}, plan.Retrain(None, 0, N)),
    ("lr_rewind", dict(retrain_steps=20000), plan.Retrain(None, N - 20000, 20000)),
    ("reinit", {}, plan.Retrain(None, 0, N, reinit=True)),
    ("custom", dict(retrain_steps=100, weights_from=K, lr_from=0), plan.Retrain(K, 0, 100)),
    ("custom", dict(retrain_steps=100, weights_from=N), plan.Retrain(None, None, 100)),
])
def test_each_method_plans_exactly(method, kwargs, expected):
  assert plan.retrain_plan(method, N, K, **kwargs) == expected


@pytest.mark.parametrize("args,match", [
    (("prune_harder", N), "unknown method 'prune_harder'"),
    (("lr_rewind", 0), "cycle_steps must be a positive integer"),
    (("lr_rewind", N, K, N + 1), "longer than the cycle"),
    (("weight_rewind", N, K, N + 1), "longer than the cycle"),
    (("weight_rewind", N, N + 1), "outside the cycle"),
    (("custom", N), "needs retrain_steps"),
    (("finetune", N, K, 2.5), "retrain_steps must be a positive integer"),
])
def test_bad_plans_say_what_is_wrong(args, match):
  with pytest.raises(ValueError, match=match):
    plan.retrain_plan(*args)


def test_registry_entries_read_only_real_retraining_settings():
  retrain_fields = {f.name for f in dataclasses.fields(hparams.HParams)
                    if f.metadata["group"] == "retrain"}
  assert {"finetune", "weight_rewind", "lr_rewind", "reinit", "custom"} <= set(plan.METHODS)
  for m in plan.METHODS.values():
    assert set(m.reads) <= retrain_fields, m.name
    assert m.help and m.name in hparams.HParams.__dataclass_fields__["method"].metadata["help"]


def test_a_registered_method_is_usable_everywhere_by_its_name(monkeypatch):
  @plan.method("half_rewind", reads=("retrain",), help="LR from N/2")
  def _half(n, k, t, weights_from, lr_from, warmup):
    return plan.Retrain(None, n // 2, n - n // 2)
  try:
    assert plan.retrain_plan("half_rewind", 100) == plan.Retrain(None, 50, 50)
    hp = hparams.HParams(method="half_rewind", train_steps="100it", lr_boundaries=("50it",),
                         rewind_step="10it").validate()
    assert hp.plan() == plan.Retrain(None, 50, 50)
  finally:
    del plan.METHODS["half_rewind"]

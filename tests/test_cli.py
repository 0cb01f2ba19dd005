"""The runner end to end: quickstart, reuse, resume after a kill, concurrency, bad flags."""

import glob
import json
import os
import shlex

import pytest

from clitools import PROCESSES, QUICK, REPO, SMALL, SWEEPS, cli, ledger, results, spawn


@pytest.mark.slow
def test_quickstart_end_to_end_then_rerun_trains_nothing(tmp_path, capsys):
  root = str(tmp_path / "runs")
  status, out, err = cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL], capsys)
  assert status == 0, err
  for method in ("finetune", "weight_rewind", "lr_rewind"):
    assert method in out
  assert "tensorboard --logdir" in out and "tfrewind report" in out
  res = results(root)
  assert len(res) == 4  # dense + three methods
  dense = [r for r in res.values() if r["kind"] == "dense"]
  assert len(dense) == 1 and dense[0]["steps"] == 40 and dense[0]["density"] == 1.0
  pruned = [r for r in res.values() if r["kind"] == "prune"]
  assert all(r["density"] == pytest.approx(0.2, abs=1e-4) for r in pruned)
  steps = sorted(r["steps"] for r in pruned)
  assert steps == [40 + 30, 40 + 40, 40 + 40]  # weight rewinding retrains N - K
  before = ledger(root)
  assert sum(l["steps"] for lines in before.values() for l in lines) == 40 + 30 + 40 + 40
  # The dense run's files, and its rewind snapshot.
  dense_dir = glob.glob(os.path.join(root, "dense_*"))[0]
  for name in ("hparams.json", "result.json", "metrics.csv", "final/ckpt.index",
               "snapshots/step_10.npz", "tb/hparams"):
    assert os.path.exists(os.path.join(dense_dir, name)), name
  assert not os.path.exists(os.path.join(dense_dir, "backup"))
  status, out2, _ = cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL], capsys)
  assert status == 0 and ledger(root) == before  # second invocation: no training at all
  assert out2.count("pt") == out.count("pt")
  # The report on this real output.
  report = str(tmp_path / "report")
  status, out3, _ = cli(["report", f"--root={root}", f"--out={report}"], capsys)
  assert status == 0 and "4 finished runs" in out3
  table = open(os.path.join(report, "results.csv")).read().splitlines()
  assert len(table) == 1 + 3 and os.path.exists(os.path.join(
      report, "resnet8_synthetic_one_shot_unstructured.png"))
  # The baselines on the same root and dense network: SNIP at initialisation at two densities
  # (its scores computed once: one file), and a gradual run, which needs no dense network.
  base = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL]
  for extra in (["--methods=weight_rewind", "--criterion=snip", "--mask_from=0it",
                 "--rewind_step=0it", "--densities=0.3,0.1"],
                ["--schedule=gradual", "--densities=0.1", "--gradual_every=5it"]):
    status, _, err = cli(base + extra, capsys)
    assert status == 0, err
  assert sorted(os.listdir(os.path.join(dense_dir, "scores"))) == ["snip_step0_b1.npz"]
  # The dense run is not trained again: its step-0 state (no snapshot of it) is replayed once.
  assert [l["phase"] for l in ledger(root)[os.path.basename(dense_dir)]] == [
      l["phase"] for l in before[os.path.basename(dense_dir)]] + ["replay"]
  from tfrewind.report import aggregate  # pylint: disable=g-import-not-at-top
  runs, _, counts = aggregate.collect(root)
  assert counts["finished"] == 7
  assert sorted(set(runs["method"])) == ["finetune", "gradual@40", "lr_rewind", "weight_rewind",
                                         "weight_rewind_snip_from0"]
  gradual = runs[runs["method"] == "gradual@40"].iloc[0]
  assert gradual["schedule"] == "one_shot" and gradual["total_steps"] == 40
  result = json.load(open(os.path.join(root, gradual["run"], "result.json")))
  metrics = open(os.path.join(root, gradual["run"], "metrics.csv")).read().strip().splitlines()
  assert float(metrics[-1].split(",")[metrics[0].split(",").index("density")]) == result["density"]
  assert abs(result["density"] - 0.1) < 0.01 and result["steps"] == 40


@pytest.mark.slow
def test_every_flag_file_parses_and_validates(capsys):
  from tfrewind import cli as cli_lib, commands  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(REPO, "flags", "*.flags")))
  assert len(files) >= 12
  counts, every = {}, []
  for path in files:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["tfrewind"] + cli_lib.expand_flagfiles([f"--flagfile={path}"]))
    runs = commands.make_grid(check_networks=False)
    counts[os.path.basename(path)] = len(runs)
    every += runs
  flags.FLAGS.unparse_flags()
  # every density (and level) on its network, each network and structure built once for all
  from tfrewind import sweep  # pylint: disable=g-import-not-at-top
  sweep.check_densities(every)
  assert counts["resnet110_one_shot.flags"] == 3
  assert counts["resnet20_one_shot.flags"] == 60  # 3 methods x 20 densities
  # 4 methods x 10 densities x 10 budgets x 3 trials, and reinit (no budget) x 10 x 3
  assert counts["renda_resnet56_one_shot.flags"] == 1230
  assert counts["renda_resnet56_structured_b.flags"] == (4 * 5 * 10 + 5) * 3  # 5 levels
  assert counts["wrn16_8_iterative.flags"] == 3
  # 6 methods x 10 densities x 10 budgets, and clr again on random masks, 3 trials
  assert counts["retraining_variants.flags"] == 2100
  assert counts["gmp_resnet20.flags"] == 20 * 2  # 20 densities x 2 budgets, no method
  assert counts["init_pruning_resnet20.flags"] == 20 + 4 * 20  # lr_rewind, 4 criteria at init
  flags.FLAGS(["tfrewind"] + cli_lib.expand_flagfiles([
      f"--flagfile={os.path.join(REPO, 'flags', 'resnet20_one_shot.flags')}",
      f"--flagfile={os.path.join(REPO, 'flags', 'common', 'controls.flags')}"]))
  assert {hp.method for hp in commands.make_grid(check_networks=False)} == {
      "finetune", "weight_rewind", "lr_rewind", "reinit"}
  flags.FLAGS.unparse_flags()


@pytest.mark.slow
def test_flag_files_carry_the_papers_hyperparameters(capsys):
  from tfrewind import cli as cli_lib, commands  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  def first(name):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["tfrewind"] + cli_lib.expand_flagfiles(
        [f"--flagfile={os.path.join(REPO, 'flags', name)}"]))
    # Networks are checked against every density by test_every_flag_file_parses_and_validates.
    hp = commands.make_grid(check_networks=False)[0]
    flags.FLAGS.unparse_flags()
    return hp

  r20 = first("resnet20_one_shot.flags")
  assert (r20.cycle_steps, r20.boundaries, r20.to_steps("rewind_step")) == (72000, [36000, 54000],
                                                                          8000)
  assert r20.nesterov and r20.reset_momentum and r20.lr == 0.1 and r20.batch_size == 128
  wrn = first("wrn16_8_iterative_30.flags")
  assert (wrn.model, wrn.cycle_steps, wrn.boundaries, wrn.lr_factor) == (
      "wrn16_8", 80000, [32000, 48000, 64000], 0.2)
  assert wrn.rate == pytest.approx(0.7) and wrn.rounds == 12
  r110 = first("resnet110_one_shot.flags")
  assert r110.density == pytest.approx(0.107374, abs=1e-6)  # 89.3% sparsity
  renda = first("renda_resnet56_one_shot.flags")
  assert renda.cycle_steps == 71108 and not renda.nesterov and renda.validation
  assert renda.protocol == "renda_code"
  assert first("renda_resnet110_structured_a.flags").structure == "structured_a"
  assert first("resnet56_cifar100_one_shot.flags").dataset == "cifar100"
  assert first("resnet20_structured.flags").structure == "channel"


@pytest.mark.slow
def test_retraining_variants_run_from_the_quickstart_and_the_report_draws_them(tmp_path, capsys):
  root, report = str(tmp_path / "runs"), str(tmp_path / "report")
  status, out, err = cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL,
                          "--methods=finetune,slr,clr,llr"], capsys)
  assert status == 0, err
  assert all(m in out for m in ("slr", "clr", "llr"))
  assert cli(["report", f"--root={root}", f"--out={report}"], capsys)[0] == 0
  table = open(os.path.join(report, "results.csv")).read()
  assert all(f",{m}," in table for m in ("finetune", "slr", "clr", "llr"))
  md = open(os.path.join(report, "report.md")).read()
  assert "a large-LR schedule (slr/clr/llr) beats fine-tuning" in md
  # Every epoch-end evaluation is kept (40 dense steps, 10 per epoch), and the best of them.
  for name, result in results(root).items():
    evals = result["epoch_eval_accuracy"]
    assert len(evals) == 4 and result["eval_set"] == "test", name
    assert result["best_test_accuracy"] == max(evals) >= result["test_accuracy"], name
  assert os.path.exists(os.path.join(report, "resnet8_synthetic_one_shot_unstructured.png"))


def test_sweep_print_runs_random_controls_as_their_own_lines(capsys):
  status, out, _ = cli(["sweep", f"--flagfile={QUICK}", "--methods=lr_rewind,clr",
                        "--random_controls=clr", "--densities=0.2", "--seeds=1", "--print"],
                       capsys)
  lines = out.strip().splitlines()
  assert status == 0 and len(lines) == 3
  assert sum("--method=clr" in l and "--criterion=random" in l for l in lines) == 1
  assert all(l.endswith("--random_controls=") or "--random_controls= " in l for l in lines)
  status, _, err = cli(["sweep", f"--flagfile={QUICK}", "--random_controls=slr", "--print"],
                       capsys)
  assert status == 2 and "--random_controls=slr names no method of the grid" in err


def test_sweep_print_gives_one_command_per_run(tmp_path, capsys):
  status, out, _ = cli(["sweep", f"--flagfile={QUICK}", "--seeds=1,2", "--densities=0.5,0.2",
                        "--print"], capsys)
  lines = out.strip().splitlines()
  assert status == 0 and len(lines) == 2 * 3 * 2
  # Every value inlined from the parsed flags: a line runs from any folder.
  assert all(l.startswith("tfrewind run --dataset=digits ") and "--flagfile" not in l
             for l in lines)
  assert sum("--method=lr_rewind" in l and "--seed=2" in l and "--density=0.2" in l
             for l in lines) == 1


BAD = [
    (["--model=resnet21"], "model"),
    (["--model=alexnet"], "unknown --model"),
    (["--densities=1.5"], "density"),
    (["--densities=0"], "density"),
    (["--density=-0.2"], "density"),
    (["--densities=0.000001"], "keeps no weight"),
    (["--rewind_step=400it"], "rewind_step"),
    (["--rewind_step=5ep"], "rewind_step"),
    (["--methods=prune_harder"], "not a method"),
    (["--schedule=cosine"], "schedule"),
    (["--criterion=grasp_code", "--scope=layerwise"], "keeps by its own global rule"),
    (["--train_steps=ten"], "not a step count"),
    (["--lr_boundaries=900it"], "lr_boundaries"),
    (["--dataset=mnist"], "dataset"),
    (["--dataset=cifar10", "--data_dir=/nonexistent/cifar", "--nodownload"], "/nonexistent/cifar"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--flagfile=/nonexistent/x.flags"], "does not exist"),
    (["--batch_size=0"], "batch_size"),
    (["--seeds=one"], "seeds"),
    (["--step=1.5", "--schedule=iterative"], "step"),
    (["--scope=local"], "scope"),
    (["--momentum=1.5"], "momentum"),
    (["--lr=-1"], "--lr=-1.0: must be > 0"),
    (["--method=custom"], "retrain_steps"),
    (["--methods=weight_rewind", "--retrain=500it"], "longer than the cycle"),
    (["--densities=0.8^x"], "densities"),
    (["--distribution=tpu"], "distribution"),
    (["--structure=structured_a"], "defined for resnet110 and resnet34 and resnet56, not --model=resnet8"),
    (["--structure=structured_b", "--model=resnet56", "--schedule=iterative"], "one_shot"),
    (["--structure=channel", "--channel_count=filters"], "channel_count"),
    (["--structure=channel", "--classifier=columns"], "classifier"),
    (["--levels=1,x", "--structure=structured_a", "--model=resnet56"], "levels"),
    (["--structure=channel_group_mean", "--scope=layerwise"], "one global threshold"),
    (["--structure=n_m", "--schedule=iterative"], "prunes once, to N of every M"),
    (["--structure=n_m", "--n_m=4:2"], "0 < N < M"),
]


@pytest.mark.parametrize("args,match", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_exit_nonzero_with_one_clear_line_before_training(args, match, tmp_path,
                                                                    capsys):
  root = tmp_path / "runs"
  status, out, err = cli(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL, *args], capsys)
  lines = [l for l in err.strip().splitlines() if l.startswith("tfrewind: error:")]
  assert status != 0
  assert len(lines) == 1 and match in lines[0], err
  assert not glob.glob(str(root / "*"))  # nothing trained, nothing written


def test_root_that_is_a_file_and_malformed_flag_file(tmp_path, capsys):
  (tmp_path / "file").write_text("x")
  status, _, err = cli(["run", f"--flagfile={QUICK}", f"--root={tmp_path / 'file'}", *SMALL],
                       capsys)
  assert status == 2 and "is a file" in err
  bad = tmp_path / "bad.flags"
  bad.write_text("--model=resnet20\nmodel resnet56\n")
  status, _, err = cli(["run", f"--flagfile={bad}"], capsys)
  assert status == 2 and "bad.flags:2" in err and "not a flag" in err
  status, _, err = cli(["fly"], capsys)
  assert status == 2 and "expected a command" in err


@pytest.mark.slow
def test_models_command_prints_counts(capsys):
  status, out, _ = cli(["models"], capsys)
  assert status == 0
  assert "resnet20" in out and "272,474" in out and "10,961,370" in out and "resnet50" in out


@pytest.mark.slow
def test_sweep_print_lines_come_from_the_parsed_flags_and_run(tmp_path, capsys):
  """`--methods finetune,lr_rewind` (a space, which absl accepts) used to leave a stray
  argument in every printed line."""
  root = str(tmp_path / "runs")
  status, out, _ = cli(["sweep", f"--flagfile={QUICK}", f"--root={root}", *SMALL, "--methods",
                        "finetune,lr_rewind", "--print"], capsys)
  lines = [shlex.split(l) for l in out.splitlines()]
  assert status == 0 and len(lines) == 2, out
  assert all("finetune,lr_rewind" not in l for l in lines)
  assert [a for a in lines[1] if a.startswith("--method")] == ["--method=lr_rewind"]
  assert "--flagfile" not in out  # every value inlined: a line runs from any folder
  assert cli(lines[1][1:], capsys)[0] == 0
  assert len(results(root)) == 2


@pytest.mark.slow
@SWEEPS
def test_two_sweep_print_lines_on_one_root_train_the_dense_network_once(
    tmp_path, capsys):
  status, out, _ = cli(["sweep", f"--flagfile={QUICK}", "--root=ROOT", *SMALL, "--print"],
                       capsys)
  lines = [shlex.split(l)[1:] for l in out.splitlines()]
  assert status == 0 and len(lines) == 3
  assert all(l[0] == "run" and "--snapshot_steps=10" in l for l in lines)
  # Weight and LR rewinding start together, on one root, and train the dense network once (as
  # two processes on one root must); whichever waits on the lock finds the rewind point (step
  # 10) saved while the dense network trained: no replay. Every line and order, run by the local
  # executor: tests/test_launch.py; a kill -9 mid-training and its resume:
  # tests/test_preemption.py.
  root = str(tmp_path / "runs")
  jobs = [[a.replace("ROOT", root) for a in lines[j]] for j in (1, 2)]
  assert "--method=weight_rewind" in jobs[0] and "--method=lr_rewind" in jobs[1]
  procs = [spawn(j, cwd=tmp_path) for j in jobs]  # concurrent
  outs = [p.communicate(timeout=400)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs
  assert len(results(root)) == 3
  dense = [l for n, ls in ledger(root).items() if n.startswith("dense") for l in ls]
  assert [l["phase"] for l in dense] == ["dense", "finished"]  # once, no replay
  # Lines without --snapshot_steps (an older jobs.txt) replay the dense trunk to K when a
  # weight-rewinding line comes after the dense run: test_faults checks that path and its log.


def _free_ports(n):
  """n free loopback ports below Linux's ephemeral range (32768+), so that no outgoing
  connection of a concurrent test can take one between this check and the workers' bind."""
  import random  # pylint: disable=g-import-not-at-top
  import socket  # pylint: disable=g-import-not-at-top
  ports = []
  for port in random.Random().sample(range(20000, 30000), 200):
    with socket.socket() as s:
      try:
        s.bind(("127.0.0.1", port))
      except OSError:
        continue
    ports.append(port)
    if len(ports) == n:
      return ports
  raise RuntimeError("no free loopback port")


@pytest.mark.slow
@PROCESSES
def test_multi_worker_two_local_processes_on_loopback(tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  root = tmp_path / "runs"
  hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = []
  for index in range(2):
    tf_config = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker",
                                                                   "index": index}})
    procs.append(spawn(["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL,
                        "--methods=weight_rewind", "--distribution=multi_worker"],
                       cwd=tmp_path, env_extra={"TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "1"}))
  outs = [p.communicate(timeout=500)[0] for p in procs]
  if [p.returncode for p in procs] != [0, 0]:
    pytest.fail("\n\n".join(f"worker {i} exit {p.returncode}:\n{out[-4000:]}"
                            for i, (p, out) in enumerate(zip(procs, outs))), pytrace=False)
  chief, worker = results(str(root)), results(str(root / ".worker1"))
  assert len(chief) == 2 and chief.keys() == worker.keys()
  for name in chief:  # trained together: the same numbers on both workers
    assert chief[name]["test_accuracy"] == worker[name]["test_accuracy"]
    assert chief[name]["layer_densities"] == worker[name]["layer_densities"]


@pytest.mark.slow
def test_controls_random_pruning_and_reinit_with_flops_and_size_in_results(tmp_path, capsys):
  root = str(tmp_path / "runs")
  base = ["run", f"--flagfile={QUICK}", f"--root={root}", *SMALL]
  assert cli(base + ["--methods=lr_rewind,reinit"], capsys)[0] == 0
  assert cli(base + ["--methods=lr_rewind", "--criterion=random"], capsys)[0] == 0
  assert cli(base + ["--methods=lr_rewind", "--control=shuffle_masks"], capsys)[0] == 0
  res = results(root)
  assert len(res) == 5  # dense, lr_rewind, reinit, random pruning, shuffled masks
  for r in res.values():
    assert r["dense_macs"] > 0 and 0 < r["stripped_gzip_bytes"] < r["stripped_bytes"]
  pruned = [r for r in res.values() if r["kind"] == "prune"]
  assert all(r["flops_speedup"] > 1 and r["compression"] == pytest.approx(5, rel=1e-3)
             for r in pruned)
  # unstructured: a theoretical count (only sparse kernels skip the zeros)
  assert all(r["macs_count"] == "sparse" and r["flops_theoretical"] for r in pruned)
  assert len({json.dumps(r["layer_densities"], sort_keys=True) for r in pruned}) >= 2
  report = str(tmp_path / "report")
  assert cli(["report", f"--root={root}", f"--out={report}"], capsys)[0] == 0
  table = open(os.path.join(report, "results.csv")).read()
  assert "lr_rewind_random" in table and "reinit" in table and "lr_rewind_shuffle_masks" in table
  assert os.path.exists(os.path.join(report, "resnet8_synthetic_one_shot_unstructured_speedup.png"))

"""`videomae-np ablate`: studies as data, their tables and plots, restartable runs."""

import json

import pytest

from videomae_np import ablate
from videomae_np.masking import MASKS

TINY = ablate.Budget(pretrain_steps=3, finetune_steps=2, train_clips=8, eval_clips=8, probe_fit=16, probe_score=8)


def test_every_study_arm_is_a_valid_run_and_masking_covers_every_mask_kind():
    budget = ablate.full_budget()
    for study in ablate.STUDIES.values():
        names = [a.name for a in study.arms]
        assert len(names) == len(set(names)), study.name
        for arm in study.arms:
            if arm.pretrain is not None:
                ablate._pretrain_settings(arm, budget, 0)
            ablate._finetune_settings(arm, budget, 0, "init" if arm.pretrain is not None else None)
    kinds = {a.pretrain["mask_type"] for a in ablate.STUDIES["masking"].arms if a.pretrain}
    assert kinds == set(MASKS)
    assert any(a.pretrain is None for a in ablate.STUDIES["masking"].arms)      # a scratch baseline


def test_summary_is_mean_and_sample_std_over_seeds_and_the_agreement_counts_pairs():
    study = ablate.STUDIES["masking"]
    records = [{"arm": "tube 90%", "seed": s, "accuracy": a, "reconstruction_loss": 0.5}
               for s, a in enumerate((0.6, 0.8))]
    records += [{"arm": "random 90%", "seed": 0, "accuracy": 0.9, "reconstruction_loss": 0.4},
                {"arm": "running cell 75%", "seed": 0, "accuracy": 0.99, "reconstruction_loss": 0.3}]
    rows = {r["arm"]: r for r in ablate.summarise(study, records)}
    assert rows["tube 90%"]["accuracy_mean"] == pytest.approx(70.0)
    assert rows["tube 90%"]["accuracy_std"] == pytest.approx(14.142135, rel=1e-6)
    assert rows["random 90%"]["seeds"] == 1 and rows["frame 87.5%"]["accuracy_mean"] is None
    text = ablate._agreement(list(rows.values()))
    assert "Of the 1 pairs" in text and "we order 0 the same way" in text
    # running cell is better but not in the paper's table: the best of the arms the paper reports
    assert "of the arms it reports, ours is **random 90%** (90.0 ± 0.0)" in text


def test_a_study_writes_its_table_plot_and_json_and_a_restart_reuses_the_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(ablate, "QUICK", TINY)
    monkeypatch.setattr(ablate, "PROGRESS_EVERY", 0.05)     # the progress check runs between jobs
    lines = []
    rows = ablate.run_study("masking", tmp_path, seeds=1, quick=True, jobs=2, log=lines.append)
    assert len(rows) == len(ablate.STUDIES["masking"].arms)
    md = (tmp_path / "masking-quick.md").read_text()
    for word in ("tube 90%", "random 90%", "frame 87.5%", "69.6", "68.3", "61.5", "--quick"):
        assert word in md, word
    data = json.loads((tmp_path / "masking-quick.json").read_text())
    assert {"arms", "summary", "results", "commit", "wall_s", "budget", "seeds"} <= set(data)
    assert len(data["results"]) == len(ablate.STUDIES["masking"].arms)
    assert all(0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["probe_accuracy"] <= 1.0 for r in data["results"])
    assert "linear probe %" in md and all(r["probe_mean"] is not None for r in data["summary"])
    assert (tmp_path / "masking-quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the default recipe's pretraining is shared: 5 pretraining arms, 5 distinct runs
    assert len(list((tmp_path / "runs-quick" / "pretrain").iterdir())) == 5
    log = (tmp_path / "runs-quick" / "log.txt").read_text()
    assert any(l.startswith("to train: 5 of 5 pretraining runs") and "6 of 6 fine-tunings" in l for l in lines)
    again = ablate.run_study("masking", tmp_path, seeds=1, quick=True, jobs=2, log=lines.append)
    assert (tmp_path / "runs-quick" / "log.txt").read_text() == log      # nothing trained again
    assert any(l.startswith("to train: 0 of 5 pretraining runs") and "0 of 6 fine-tunings" in l for l in lines)
    assert [r["accuracy_mean"] for r in again] == [r["accuracy_mean"] for r in rows]
    # moved elsewhere and named by a relative --out, the runs are still the same runs
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    monkeypatch.chdir(moved.parent)
    ablate.run_study("masking", moved.name, seeds=1, quick=True, jobs=2, log=lines.append)
    assert (moved / "runs-quick" / "log.txt").read_text() == log


def test_bad_study_arguments_are_one_line():
    with pytest.raises(ValueError, match="study must be one of"):
        ablate.run_study("colour", "x")
    with pytest.raises(ValueError, match="--seeds"):
        ablate.run_study("masking", "x", seeds=0)
    with pytest.raises(ValueError, match="--jobs"):
        ablate.run_study("masking", "x", jobs=0)
    for bad in (0, -5, 2.5, True, "100", [100]):
        with pytest.raises(ValueError, match=r"--pretrain-steps: expected an integer >= 1, found"):
            ablate.run_study("masking", "x", pretrain_steps=bad)
    with pytest.raises(ValueError, match="--pretrain-steps: --quick has its own budget"):
        ablate.run_study("masking", "x", quick=True, pretrain_steps=100)


def test_a_study_at_other_pretraining_steps_writes_its_own_files_and_says_whose_hypothesis(tmp_path, monkeypatch):
    monkeypatch.setattr(ablate, "full_budget", lambda study=None: TINY)
    ablate.run_study("ratio", tmp_path, seeds=1, jobs=2, pretrain_steps=4, log=lambda m: None)
    data = json.loads((tmp_path / "ratio-4steps.json").read_text())
    assert data["budget"]["pretrain_steps"] == 4 and not data["quick"]
    assert all(json.loads((tmp_path / r["pretrain_dir"] / "trainer_state.json").read_text())["step"] == 4
               for r in data["results"])
    md = (tmp_path / "ratio-4steps.md").read_text()
    assert md.count("Toy scale: 4 pretraining steps") == 1
    study, default = ablate.STUDIES["ratio"], ablate.PretrainSettings.steps
    other = ablate._hypothesis(study, {"budget": {"pretrain_steps": 4}, "quick": False})
    assert other.startswith(f"the hypothesis written for the default budget ({default} pretraining "
                            f"steps; this study had 4): ") and other.endswith(study.hypothesis)
    assert ablate._hypothesis(study, {"budget": {"pretrain_steps": default}, "quick": False}) == \
        "a hypothesis: " + study.hypothesis
    # an ordering unlike the paper's (tube 50% first) prints the hypothesis, named as the default's
    records = [{"arm": a.name, "seed": 0, "accuracy": 0.9 - 0.1 * k} for k, a in enumerate(study.arms)]
    meta = dict(data, budget={**data["budget"], "pretrain_steps": 4})
    text = ablate.write_markdown(tmp_path / "crafted.md", study, ablate.summarise(study, records), meta)
    assert "Where we differ, " + other in text
    assert (tmp_path / "ratio-4steps.png").is_file() and not (tmp_path / "ratio.json").exists()


def test_arms_sharing_a_pretraining_run_are_grouped_so_no_two_processes_train_into_one_folder():
    study = ablate.STUDIES["data"]
    work = [(a, s) for s in range(2) for a in study.arms]
    groups = ablate._groups(work, TINY)
    sizes = [a for a in study.arms if a.series == "pretrained"]
    assert len(sizes) >= 3 and sorted(len(g) for g in groups)[-1] == len(sizes)   # one pretraining, every size
    assert sum(len(g) for g in groups) == len(work)
    for g in groups:
        assert len({s for _, s in g}) == 1
        keys = {ablate._digest(ablate._pretrain_settings(a, TINY, s).to_dict()) if a.pretrain is not None
                else a.name for a, s in g}
        assert len(keys) == 1


def test_compute_time_counts_a_shared_pretraining_once():
    records = [{"pretrain_dir": "p0", "pretrain_seconds": 600.0, "finetune_dir": f"f{i}", "finetune_seconds": 60.0}
               for i in range(3)] + [{"finetune_dir": "s", "finetune_seconds": 30.0}]
    assert ablate.compute_minutes(records) == pytest.approx((600 + 3 * 60 + 30) / 60)


def test_a_study_with_numeric_and_named_arms_draws_curves_beside_bars(tmp_path):
    import matplotlib.image as mpimg
    study = ablate.STUDIES["data"]
    records = [{"arm": a.name, "seed": s, "accuracy": 0.3 + 0.1 * s + 0.01 * i}
               for i, a in enumerate(study.arms) for s in range(2)]
    rows = ablate.summarise(study, records)
    meta = {"classes": 4, "seeds": [0, 1], "quick": False}
    ablate.write_plot(tmp_path / "data.png", study, rows, meta)
    one = ablate.STUDIES["ratio"]
    ablate.write_plot(tmp_path / "ratio.png", one, ablate.summarise(
        one, [{"arm": a.name, "seed": 0, "accuracy": 0.5} for a in one.arms]), meta)
    wide, narrow = mpimg.imread(tmp_path / "data.png"), mpimg.imread(tmp_path / "ratio.png")
    assert wide.shape[1] == 2 * narrow.shape[1]          # two panels: the labelled-set curves, the named arms


def test_the_data_study_table_gives_paired_gaps_per_size_beside_the_papers_table_2():
    study = ablate.STUDIES["data"]
    acc = {"pretrained": {128: (0.5, 0.6), 4096: (0.8, 0.9)}, "scratch": {128: (0.3, 0.2), 4096: (0.3, 0.5)}}
    records = [{"arm": f"{kind}, {n} labelled", "seed": s, "accuracy": a}
               for kind, by_n in acc.items() for n, seeds in by_n.items() for s, a in enumerate(seeds)]
    meta = {"budget": {"pretrain_steps": ablate.PretrainSettings.steps}, "quick": False}
    lines = ablate._paired_gaps(study, ablate.summarise(study, records), meta)
    text = "\n".join(lines)
    assert "| 128 | +30.0 ± 14.1 | +20.0, +40.0 |" in text       # (50-30, 60-20): seeds paired
    assert "| 4096 | +45.0 ± 7.1 | +50.0, +40.0 |" in text
    assert "HMDB51 (3,500 videos) 18.0 → 62.6 (+44.6)" in text
    assert "unlike the paper, whose gain is largest on its smallest set" in text   # ours grows with the set
    assert "set. A hypothesis: " + study.hypothesis in text
    other = dict(meta, budget={"pretrain_steps": 6000})
    assert "set. The hypothesis written for the default budget" in "\n".join(
        ablate._paired_gaps(study, ablate.summarise(study, records), other))
    assert ablate._paired_gaps(ablate.STUDIES["masking"], [], meta) == []


def test_the_decoder_studys_default_depth_is_the_default_run():
    budget = ablate.full_budget()
    default = ablate._pretrain_settings(ablate.STUDIES["masking"].arms[1], budget, 0)     # tube 75%
    arms = {a.x: a for a in ablate.STUDIES["decoder"].arms}
    assert ablate._pretrain_settings(arms[ablate.TOY_DECODER_BLOCKS], budget, 0) == default
    assert ablate._pretrain_settings(arms[4], budget, 0).model_config().decoder_num_hidden_layers == 4


def test_progress_names_each_pretraining_run_saved_part_way_and_nothing_else(tmp_path):
    study = ablate.STUDIES["ratio"]
    budget = ablate.full_budget(study)
    groups = ablate._groups([(arm, s) for s in range(2) for arm in study.arms], budget)
    assert ablate.pretraining_progress(tmp_path, groups, budget) == ""        # nothing saved yet
    arms = {a.name: a for a in study.arms}

    def save(name, seed, text):
        _, pdir = ablate._pretrain_run(tmp_path, arms[name], budget, seed)
        pdir.mkdir(parents=True)
        (pdir / "trainer_state.json").write_text(text)

    state = lambda step: json.dumps({"step": step, "kind": "pretrain", "settings": {}})
    save("tube 75%", 1, state(500))                       # under way
    save("tube 90%", 0, state(budget.pretrain_steps))     # finished: not in progress
    save("tube 50%", 0, "{not json")                      # unreadable: skipped, the job will say
    save("tube 95%", 1, state(0))                         # nothing done yet
    text = ablate.pretraining_progress(tmp_path, groups, budget)
    assert text == f"tube 75% seed 1 at step 500/{budget.pretrain_steps}"


def test_the_work_left_counts_only_runs_without_their_last_step_or_results(tmp_path):
    study = ablate.STUDIES["masking"]
    budget = ablate.full_budget(study)
    groups = ablate._groups([(arm, s) for s in range(2) for arm in study.arms], budget)
    pretrained = [a for a in study.arms if a.pretrain is not None]
    n_pre, n_fine = 2 * len(pretrained), 2 * len(study.arms)
    assert ablate.work_left(tmp_path, groups, budget) == (n_pre, n_pre, n_fine, n_fine)

    def pretrained_run(arm, seed, step, weights=True):
        _, pdir = ablate._pretrain_run(tmp_path, arm, budget, seed)
        pdir.mkdir(parents=True)
        (pdir / "trainer_state.json").write_text(json.dumps({"step": step, "kind": "pretrain", "settings": {}}))
        if weights:
            (pdir / "model.safetensors").write_bytes(b"")
        return pdir

    done = pretrained_run(pretrained[0], 0, budget.pretrain_steps)             # finished
    pretrained_run(pretrained[1], 0, 500)                                       # part-way
    pretrained_run(pretrained[2], 1, budget.pretrain_steps, weights=False)     # torn: no weights
    fs = ablate._finetune_settings(pretrained[0], budget, 0, str(done))
    fdir = ablate._finetune_dir(tmp_path, fs, 0)
    fdir.mkdir(parents=True)
    (fdir / "metrics.json").write_text("{}")                                    # its fine-tuning is done
    assert ablate.work_left(tmp_path, groups, budget) == (n_pre - 1, n_pre, n_fine - 1, n_fine)

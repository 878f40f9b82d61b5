"""``videomae-np ablate STUDY``: the paper's ablations at toy scale, beside the paper's numbers.

A study is a list of arms that differ in one thing (the masking, the ratio, the decoder depth, the
loss, the data); every arm gets the same budget and the same seeds. One job is (arm, seed):

    pretrain (unless the arm starts from scratch)  ->  fine-tune on labelled toy clips
    ->  held-out accuracy (the metric), the final reconstruction loss, and the linear probe
        of the frozen encoder (probe.py: what the pretraining alone put into the features)

Arms that pretrain identically (the paper's default recipe appears in every study) share one
pretraining run per seed: runs are kept under ``DIR/runs/`` by a digest of their settings, and a
job whose results exist is not run again, so an interrupted study restarts where it stopped.

Writes ``DIR/STUDY.json`` (arms, settings, per-seed results, mean and std, commit, wall time),
``DIR/STUDY.md`` (a table with the paper's number beside ours, and what disagrees) and
``DIR/STUDY.png`` (means with error bars over seeds).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing as mp
import numbers
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .fileio import atomic_write, atomic_write_text, read_json_object
from .settings import TOY_MODEL, FinetuneSettings, PretrainSettings


# ------------------------------------------------------------------------------------------------
# what a study is
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arm:
    name: str
    pretrain: dict | None = field(default_factory=dict)   # PretrainSettings overrides; None = scratch
    finetune: dict = field(default_factory=dict)          # FinetuneSettings overrides
    paper: float | None = None                            # the paper's SSv2 top-1 (%) for this arm
    x: float | None = None                                # position on the plot's x axis, if numeric
    series: str = ""                                      # curves of one plot (e.g. pretrained, scratch)


@dataclass(frozen=True)
class Budget:
    pretrain_steps: int
    finetune_steps: int
    train_clips: int
    eval_clips: int
    probe_fit: int = 1024           # clips the linear probe of the frozen encoder is fitted on (probe.py)
    probe_score: int = 512          # and scored on


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    source: str                     # where the paper's numbers come from
    arms: tuple
    hypothesis: str                 # printed when our ordering disagrees with the paper's
    xlabel: str = ""
    train_clips: int | None = None      # labelled clips to fine-tune on; None: the default's 1024


# Every study pretrains like `videomae-np pretrain` (PretrainSettings.steps, 12000). At half that
# budget the default arm (tube 75%) reached 78.6 +- 2.6% held-out, at 12000 99.9 +- 0.1%, and the
# arms' order changed with it (tube 90%: 31.2 and 29.1% at 6000 steps, 88.5 and 46.9% at 12000,
# seeds 0 and 1). The 6000-step studies fine-tuned on 1024 labelled clips are kept as
# results/*-6000steps-1024labelled.md; `--pretrain-steps 6000` (results/*-6000steps.md) reruns a
# study at that budget on today's labelled clips.

# After 12000 pretraining steps, fine-tuning on the default's 1024 labelled clips leaves no room to
# order the arms: tube 75%, random 90%, frame 87.5% and running cell all reached 99-100% held-out
# (results/masking-1024labelled.md). Every study but data (which varies it) fine-tunes on 128 labelled
# clips instead, where the data study measured the default arm at 78.6 +- 2.9% and scratch at 29.0 +- 1.6%.
FEW_LABELS = 128


def full_budget(study: "Study | None" = None) -> Budget:
    """The budget of every arm of a study: the default commands' pretraining and fine-tuning (steps,
    held-out clips, and labelled clips unless the study says)."""
    f = FinetuneSettings()
    return Budget(pretrain_steps=PretrainSettings.steps, finetune_steps=f.steps,
                  train_clips=getattr(study, "train_clips", None) or f.train_clips, eval_clips=f.eval_clips)


QUICK = Budget(pretrain_steps=120, finetune_steps=60, train_clips=128, eval_clips=128, probe_fit=256, probe_score=128)

# Table 2 of the paper (ViT-B top-1 %): train videos, from scratch, after VideoMAE pretraining
PAPER_TABLE2 = {"HMDB51": (3_500, 18.0, 62.6), "UCF101": (9_500, 51.4, 91.3),
                "SSv2": (169_000, 32.6, 69.6), "K400": (240_000, 68.8, 80.0)}

TOY_DECODER_BLOCKS = TOY_MODEL["decoder_num_hidden_layers"]   # the toy model's decoder depth
TUBE90 = dict(mask_type="tube", mask_ratio=0.9)    # the paper's default (Table 1)
TUBE75 = dict(mask_type="tube", mask_ratio=0.75)   # the paper's small-data recipe; ours by default

STUDIES = {s.name: s for s in (
    Study(
        "masking", "Masking strategy", "Table 1b (ViT-B, SSv2 top-1); running cell: VideoMAE V2",
        (Arm("tube 90%", TUBE90, paper=69.6),
         Arm("tube 75%", TUBE75, paper=68.0),
         Arm("random 90%", dict(mask_type="random", mask_ratio=0.9), paper=68.3),
         Arm("frame 87.5%", dict(mask_type="frame", mask_ratio=0.875), paper=61.5),
         Arm("running cell 75%", dict(mask_type="running_cell", mask_ratio=0.75)),
         Arm("no pretraining", None, paper=32.6)),
        "frame masking hides 3 of the toy's 4 temporal slots (int(0.875 x 4), 75% of the tokens); "
        "the visible slot is a 2-frame tubelet in which the shapes already move, and rebuilding "
        "the hidden slots means carrying that motion forward and back. All shapes of a clip move "
        "one way and that way is the label, so on the toy frame masking's pretext task is the "
        "downstream task; on SSv2 a hidden frame is mostly its neighbours' appearance. Tube 90% "
        "shows the same 7 of 64 patches in every slot, too few to see where two shapes of 3-5 "
        "patches across are (the ratio study), while random 90% shows 26 patches of the clip's "
        "256 in as many different places. And the copying that tubes prevent matters less "
        "here: the shapes move about a patch per tubelet, so the same place one slot away rarely "
        "holds the same content, where most of a real frame is static.",
        train_clips=FEW_LABELS),
    Study(
        "ratio", "Masking ratio (tube)", "Figure 3 (SSv2 top-1, read off the figure)",
        tuple(Arm(f"tube {int(r * 100)}%", dict(mask_type="tube", mask_ratio=r), paper=p, x=r * 100)
              for r, p in ((0.5, 65.2), (0.75, 68.0), (0.9, 69.6), (0.95, 69.3))),
        "the toy has 8x8 patches a frame: 50% leaves 32 visible per temporal slot, 75% 16, 90% 7 "
        "and 95% 4, where ViT-B's 14x14 keeps 20 at 90%. With 7 or fewer the small model mostly "
        "did not learn where its two shapes go within 12000 steps: tube 90% ended at a norm-pix "
        "loss of 0.62 and 95% at 0.74 (75%: 0.50), and their encoders stayed at chance with 128 "
        "labelled clips (with 1024, one seed of three at 90% reached 88.5%); twice the pretraining "
        "(24000 steps, docs/toy_scale.md) moved 90% only to 36.5 ± 4.1% while 75% reached "
        "99.8 ± 0.2%. The paper's "
        "redundancy argument, that a low ratio is too easy, needs objects that span many "
        "patches; ours span a handful, and 50% is not too easy yet (one seed of three did not "
        "transfer with 128 labelled clips).",
        xlabel="masking ratio (%)", train_clips=FEW_LABELS),
    Study(
        "decoder", "Decoder depth", "Table 1a (SSv2 top-1)",
        # the toy model has 1 decoder block: that arm is the default run itself (no override,
        # so it shares the pretraining of every other study)
        tuple(Arm(f"{d} block{'s' if d > 1 else ''}",
                  dict(TUBE75, model=dict(decoder_num_hidden_layers=d)) if d != TOY_DECODER_BLOCKS else TUBE75,
                  paper=p, x=d)
              for d, p in ((1, 68.5), (2, 69.2), (4, 69.6))),
        "every pair of arms lies within one standard deviation, so this data orders none of them. "
        "Two blocks beat one in two seeds of three (98.8 and 98.0% against 81.4 and 78.7%), the "
        "direction of Table 1a, and four are erratic: seed 0's 4-block encoder stayed near chance "
        "at 6000 pretraining steps (27.3%) and at 12000 (37.3%), although its final loss matched "
        "the other seeds' (0.488 against 0.484 for seed 1's 89.8%), and every fine-tuning run fitted "
        "its 128 clips. The paper's decoder is a narrow add-on (4 blocks of width 384 behind 12 of "
        "768); the toy's 4-block decoder is as deep and as wide as its 4-block encoder, so how the "
        "reconstruction divides between the two may differ from run to run, which the loss does "
        "not show (a hypothesis we have not tested).",
        xlabel="decoder blocks", train_clips=FEW_LABELS),
    Study(
        "loss", "Reconstruction loss and target", "Table 1f (SSv2 top-1, on normalised pixels)",
        (Arm("MSE, norm-pix", dict(TUBE75, loss="mse"), paper=69.6),
         Arm("L1, norm-pix", dict(TUBE75, loss="l1"), paper=69.1),
         Arm("smooth L1, norm-pix", dict(TUBE75, loss="smooth_l1"), paper=68.9),
         Arm("MSE, raw pixels", dict(TUBE75, loss="mse", model=dict(norm_pix_loss=False)))),
        "only MSE on normalised pixels transfers to 128 labelled clips here, where Table 1f's three "
        "losses lie within 0.7 points. Not for want of reconstruction: on 64 new clips the "
        "encoders' squared error on the masked norm-pix targets is 0.506-0.509 (MSE), 0.508-0.530 "
        "(smooth L1) and 0.548-0.634 (L1). What differs is what the encoder keeps: a ridge "
        "classifier on the frozen, mean-pooled features (the probe column) reads the label at "
        "90.6, 73.4 and 77.5% from the MSE encoders, 38.1, "
        "55.1 and 49.6 (smooth L1), 29.9, 35.5 and 32.6 (L1), 46.9, 47.9 and 52.9 (raw-pixel "
        "MSE), and 29.5, 32.2 and 30.9 from untrained ones. Perhaps it is that MSE's pull on a value "
        "grows with its error, and the 14% of target values the MSE models miss by more than 1 "
        "carry 68% of their squared error; such misses are twice as frequent in the quarter of "
        "masked tokens that change most between their two frames (24% against 11%), so MSE "
        "weighs the moving parts more, where L1 pulls on every value equally and smooth L1 caps "
        "the large errors. Raw-pixel targets weigh a patch by its contrast instead of "
        "standardising it, and land in between. That this decides what the encoder keeps is not "
        "shown.",
        train_clips=FEW_LABELS),
    Study(
        "data", "Data efficiency and pretraining data",
        "Table 2 (scratch vs VideoMAE), Table 1e / section 4.4 (data quality over quantity)",
        tuple(Arm(f"{kind}, {n} labelled", TUBE75 if kind == "pretrained" else None,
                  finetune=dict(train_clips=n), x=n, series=kind)
              for kind in ("pretrained", "scratch") for n in (128, 256, 512, 1024, 4096))
        + (Arm("pretrained on 512 clips", dict(TUBE75, pretrain_clips=512), series="pretraining set"),
           Arm("pretrained on still clips", dict(TUBE75, toy=dict(speed=(0.0, 0.0), spin=(0.0, 0.0),
                                                                  zoom=(0.0, 0.0))),
               series="pretraining set")),
        "800 fine-tuning updates are 3 epochs of 4096 clips and 12.5 of 1024: too few for the "
        "from-scratch runs to leave chance (4096) or to do so in every seed (1024), so those gaps "
        "are large whatever the pretraining, and the trend is better read from 128 to 512 clips, "
        "where the from-scratch runs fit their training clips. The pretraining budget decides it "
        "there: after 6000 pretraining steps (results/data-6000steps.md) the pretrained start "
        "gained nothing or lost (-0.9 to -12.9 points) on 128-512 labelled clips, since a 4-layer ViT from scratch "
        "learns the toy's one global motion from a few hundred clips seen many times (25 epochs "
        "of 512) and a half-trained encoder mostly made the fine-tuning steadier. On the "
        "pretraining data (Table 1e), fine-tuning on 1024 labelled clips hides what the linear "
        "probe shows: encoders pretrained on still clips or on a fixed set of 512 clips come "
        "within a few points of the default after fine-tuning, but their frozen features read the "
        "label at about 40%, the default's at 80.5% (untrained: 30.9%). Motion has to be seen to "
        "be learnt, as the paper's domain argument has it; and a small set, seen 375 times a clip, "
        "is fitted more closely (the lowest reconstruction loss, 0.438) and teaches less.",
        xlabel="labelled clips"),
)}


# ------------------------------------------------------------------------------------------------
# one job
# ------------------------------------------------------------------------------------------------
def _digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:10]


def _pretrain_settings(arm: Arm, budget: Budget, seed: int):
    over = dict(arm.pretrain)
    return PretrainSettings(steps=budget.pretrain_steps, seed=seed, log_every=10**9, save_every=500, **over)


def _finetune_settings(arm: Arm, budget: Budget, seed: int, init):
    over = dict(dict(train_clips=budget.train_clips, eval_clips=budget.eval_clips), **arm.finetune)
    toy = (arm.pretrain or {}).get("toy", {})
    model = {k: v for k, v in (arm.pretrain or {}).get("model", {}).items()}
    if toy and init:          # pretraining on other clips: fine-tune on the default ones
        toy = {}
    return FinetuneSettings(steps=budget.finetune_steps, seed=seed, init=init, toy=toy,
                            model={} if init else model, log_every=10**9, save_every=10**9, **over)


def _pretrain_run(root, arm: Arm, budget: Budget, seed: int):
    """An arm's pretraining settings for this budget and seed, and the run folder they name."""
    ps = _pretrain_settings(arm, budget, seed)
    return ps, Path(root) / "pretrain" / f"{_digest(ps.to_dict())}-s{seed}"


def _pretrained(ps, pdir: Path, state) -> bool:
    """Whether a pretraining run (its settings, folder and trainer state) has its last step and weights."""
    return state is not None and state["step"] >= ps.steps and (pdir / "model.safetensors").is_file()


def _finetune_dir(root: Path, fs: FinetuneSettings, seed: int) -> Path:
    """A fine-tuning run's folder, named by its settings with the pretraining run it starts from
    spelt relative to the runs folder: the same run has the same name whatever --out was (relative,
    absolute, another checkout)."""
    named = fs.to_dict()
    if fs.init is not None:
        named["init"] = Path(fs.init).relative_to(root).as_posix()
    return root / "finetune" / f"{_digest(named)}-s{seed}"


def _probe(budget: Budget, seed: int, root: Path, pdir: Path | None) -> float:
    """The linear-probe accuracy of a frozen encoder: the pretraining run `pdir`'s, or (pdir None,
    an arm without pretraining) the untrained toy encoder of this seed. Kept in a probe.json beside
    the run, or under root/untrained/, and measured again when that does not match the budget."""
    from . import probe
    from .models import VideoMAEModel
    if pdir is None:
        cfg = PretrainSettings().model_config()
        where, load = root / "untrained" / f"{_digest(cfg.to_dict())}-s{seed}", \
            lambda: VideoMAEModel(cfg, seed=seed, dtype=np.float32)
    else:
        where, load = pdir, lambda: VideoMAEModel.from_pretrained(pdir)
    asked = {"fit": budget.probe_fit, "score": budget.probe_score,
             "streams": [probe.FIT_STREAM, probe.SCORE_STREAM]}
    kept = where / "probe.json"
    if kept.is_file():
        try:
            got = read_json_object(kept)
            if {k: got.get(k) for k in asked} == asked:
                return float(got["accuracy"])
        except (ValueError, KeyError, TypeError):
            pass                               # unreadable: measured again and replaced
    acc = probe.toy_probe_accuracy(load(), budget.probe_fit, budget.probe_score)
    where.mkdir(parents=True, exist_ok=True)
    atomic_write_text(kept, json.dumps({**asked, "accuracy": acc}) + "\n")
    return acc


def _job(root: str, arm: Arm, budget: Budget, seed: int) -> dict:
    """Pretrain (or reuse) and fine-tune one arm with one seed; returns its result record."""
    from .kernels.threads import set_threads
    from . import runs, train
    set_threads(1)
    root = Path(root)
    t0 = time.perf_counter()
    result = {"arm": arm.name, "seed": seed}
    init = None
    if arm.pretrain is not None:
        ps, pdir = _pretrain_run(root, arm, budget, seed)
        state = runs.read_state(pdir)
        if not _pretrained(ps, pdir, state):
            with open(root / "log.txt", "a") as f:
                log = lambda m: print(m, file=f, flush=True)
                train.run_pretrain(ps, pdir, resume=state is not None, log=log)
        hist = [r["loss"] for r in runs.read_metrics(pdir)]
        result["pretrain_dir"] = str(pdir.relative_to(root.parent))
        result["pretrain_seconds"] = runs.read_state(pdir).get("seconds_last_session")
        result["reconstruction_loss"] = float(np.mean(hist[-50:]))
        init = str(pdir)
    fs = _finetune_settings(arm, budget, seed, init)
    fdir = _finetune_dir(root, fs, seed)
    metrics_file = fdir / runs.METRICS_JSON
    if not metrics_file.is_file():
        state = runs.read_state(fdir)
        with open(root / "log.txt", "a") as f:
            log = lambda m: print(m, file=f, flush=True)
            train.run_finetune(fs, fdir, resume=state is not None, log=log)
    metrics = read_json_object(metrics_file)
    result["probe_accuracy"] = _probe(budget, seed, root, Path(init) if init else None)
    result.update(accuracy=metrics["eval_accuracy"], train_accuracy=metrics["train_accuracy"],
                  finetune_dir=str(fdir.relative_to(root.parent)),
                  finetune_seconds=metrics.get("seconds_last_session"),
                  seconds=round(time.perf_counter() - t0, 1))     # this invocation (small when reused)
    return result


def compute_minutes(records) -> float:
    """Minutes the study's runs took when they were computed (each shared pretraining counted once;
    a resumed run counts its last session only), whatever this invocation reused."""
    pre = {r["pretrain_dir"]: r.get("pretrain_seconds") or 0.0 for r in records if "pretrain_dir" in r}
    fine = {r["finetune_dir"]: r.get("finetune_seconds") or 0.0 for r in records}
    return (sum(pre.values()) + sum(fine.values())) / 60


def _jobs_in_turn(root: str, arms: tuple, budget: Budget, seed: int) -> list:
    """Run arms that share one pretraining run one after the other (the first pretrains, the
    others reuse it): two processes never train into the same run folder."""
    return [_job(root, arm, budget, seed) for arm in arms]


def _groups(work, budget):
    """[(arm, seed)] -> lists of the same, grouped by the pretraining run they share (in order)."""
    groups = {}
    for arm, seed in work:
        key = ((_digest(_pretrain_settings(arm, budget, seed).to_dict()), seed)
               if arm.pretrain is not None else (arm.name, seed))
        groups.setdefault(key, []).append((arm, seed))
    return list(groups.values())


# While pretraining runs are under way, a line every this many seconds says how far each has got
# (a 12000-step run takes 7-9 min and saves its state every 500 steps).
PROGRESS_EVERY = 60.0


def pretraining_progress(root, groups, budget) -> str:
    """'ARM seed S at step K/STEPS' for each pretraining run of these groups that has saved a step
    but not its last (a run under way, or one left part-way that a job will resume)."""
    from . import runs
    parts = []
    for group in groups:
        arm, seed = group[0]
        if arm.pretrain is None:
            continue
        ps, pdir = _pretrain_run(root, arm, budget, seed)
        try:
            state = runs.read_state(pdir)
        except (OSError, ValueError):      # being replaced, or not ours to judge here: the job will say
            continue
        if state is not None and 0 < state["step"] < ps.steps:
            parts.append(f"{arm.name} seed {seed} at step {state['step']}/{ps.steps}")
    return "; ".join(parts)


def work_left(root, groups, budget) -> tuple:
    """(pretraining runs still to train, of all the study needs; fine-tunings still to train, of
    all): what a start or a restart has ahead of it, before the first job reports."""
    from . import runs
    root = Path(root)
    pre_left = pre_all = fine_left = fine_all = 0
    for group in groups:
        init = None
        if group[0][0].pretrain is not None:
            ps, pdir = _pretrain_run(root, group[0][0], budget, group[0][1])
            pre_all += 1
            try:
                state = runs.read_state(pdir)
            except (OSError, ValueError):      # unreadable: the job says so when it gets there
                state = None
            pre_left += not _pretrained(ps, pdir, state)
            init = str(pdir)
        for arm, seed in group:
            fdir = _finetune_dir(root, _finetune_settings(arm, budget, seed, init), seed)
            fine_all += 1
            fine_left += not (fdir / runs.METRICS_JSON).is_file()
    return pre_left, pre_all, fine_left, fine_all


# ------------------------------------------------------------------------------------------------
# the study
# ------------------------------------------------------------------------------------------------
def _commit():
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        # changes to the package's code (not to results/, which a study run rewrites itself)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def summarise(study: Study, records: list) -> list:
    """Per arm: mean and std (over seeds) of the accuracy and the linear probe's (in %), and of
    the reconstruction loss."""
    rows = []
    for arm in study.arms:
        rs = [r for r in records if r["arm"] == arm.name]
        acc = [100 * r["accuracy"] for r in rs]
        rec = [r["reconstruction_loss"] for r in rs if "reconstruction_loss" in r]
        probe = [100 * r["probe_accuracy"] for r in rs if "probe_accuracy" in r]
        rows.append({
            "arm": arm.name, "paper": arm.paper, "x": arm.x, "series": arm.series, "seeds": len(rs),
            "accuracy_mean": float(np.mean(acc)) if acc else None,
            "accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
            "accuracy_per_seed": acc,
            "probe_mean": float(np.mean(probe)) if probe else None,
            "probe_std": float(np.std(probe, ddof=1)) if len(probe) > 1 else (0.0 if probe else None),
            "probe_per_seed": probe,
            "reconstruction_loss_mean": float(np.mean(rec)) if rec else None,
            "reconstruction_loss_std": float(np.std(rec, ddof=1)) if len(rec) > 1 else (0.0 if rec else None),
        })
    return rows


def _agreement(rows) -> str:
    """How our ordering of the arms compares with the paper's, over the arms it reports."""
    both = [r for r in rows if r["paper"] is not None and r["accuracy_mean"] is not None]
    if len(both) < 2:
        return ""
    paper_best = max(both, key=lambda r: r["paper"])
    ours_best = max(both, key=lambda r: r["accuracy_mean"])
    pairs = agree = 0
    for i in range(len(both)):
        for j in range(i + 1, len(both)):
            a, b = both[i], both[j]
            if a["paper"] == b["paper"]:
                continue
            pairs += 1
            agree += (a["paper"] > b["paper"]) == (a["accuracy_mean"] > b["accuracy_mean"])
    # a difference smaller than the spread of the seeds is not an ordering
    close = [f"{a['arm']} vs {b['arm']}" for i, a in enumerate(both) for b in both[i + 1:]
             if abs(a["accuracy_mean"] - b["accuracy_mean"]) < max(a["accuracy_std"], b["accuracy_std"])]
    text = (f"The paper's best arm is **{paper_best['arm']}** ({paper_best['paper']}); of the arms it "
            f"reports, ours is "
            f"**{ours_best['arm']}** ({ours_best['accuracy_mean']:.1f} ± {ours_best['accuracy_std']:.1f}). "
            f"Of the {pairs} pairs of arms the paper orders, we order {agree} the same way.")
    if close:
        text += " Within one standard deviation of each other (no order can be read): " + "; ".join(close) + "."
    return text


def _hypothesis(study: Study, meta, capital=False) -> str:
    """The study's hypothesis, said to be the default budget's when this study had another."""
    steps = meta["budget"]["pretrain_steps"]
    if meta["quick"] or steps == PretrainSettings.steps:
        text = f"a hypothesis: {study.hypothesis}"
    else:
        text = (f"the hypothesis written for the default budget ({PretrainSettings.steps} pretraining "
                f"steps; this study had {steps}): {study.hypothesis}")
    return text[0].upper() + text[1:] if capital else text


def _paired_gaps(study, rows, meta) -> list:
    """For a study with a 'pretrained' and a 'scratch' series over labelled-set sizes: the gap
    per size, paired by seed, beside the paper's Table 2 (markdown lines; none otherwise)."""
    by = {}
    for r in rows:
        if r["accuracy_mean"] is not None and r["x"] is not None:
            by.setdefault(r["series"], {})[r["x"]] = r
    pre, scr = by.get("pretrained", {}), by.get("scratch", {})
    sizes = sorted(set(pre) & set(scr))
    if not sizes:
        return []
    lines = ["", "Pretrained minus scratch, paired by seed (points):", "",
             "| labelled clips | gap mean ± std | per seed |", "|---:|---:|---|"]
    means = []
    for n in sizes:
        a, b = pre[n]["accuracy_per_seed"], scr[n]["accuracy_per_seed"]
        k = min(len(a), len(b))
        d = np.array(a[:k]) - np.array(b[:k])
        std = float(np.std(d, ddof=1)) if k > 1 else 0.0
        means.append(float(d.mean()))
        lines.append(f"| {int(n)} | {d.mean():+.1f} ± {std:.1f} | {', '.join(f'{x:+.1f}' for x in d)} |")
    lines += ["", "The paper's Table 2 (ViT-B top-1 %, from scratch → VideoMAE): " + "; ".join(
        f"{k} ({n:,} videos) {a} → {b} ({b - a:+.1f})" for k, (n, a, b) in PAPER_TABLE2.items())
        + ". The gain is largest on the smallest sets."]
    if len(sizes) > 1 and int(np.argmax(means)) != 0:
        lines += ["", f"Ours is largest at {int(sizes[int(np.argmax(means))])} labelled clips "
                  f"({max(means):+.1f}) and {means[0]:+.1f} at {int(sizes[0])}: unlike the paper, whose gain "
                  f"is largest on its smallest set. {_hypothesis(study, meta, capital=True)}"]
    return lines


def write_markdown(path: Path, study: Study, rows, meta) -> str:
    lines = [f"# {study.title} (`videomae-np ablate {study.name}`)", "",
             f"Toy scale: {meta['budget']['pretrain_steps']} pretraining steps, "
             f"{meta['budget']['finetune_steps']} fine-tuning steps on {meta['budget']['train_clips']} "
             f"labelled clips (unless the arm says otherwise), held-out accuracy on "
             f"{meta['budget']['eval_clips']} clips, chance {100 / meta['classes']:.0f}%; "
             f"seeds {meta['seeds']}; commit {meta['commit']}; this invocation took "
             f"{meta['wall_s'] / 60:.1f} min of wall time ({meta['jobs']} jobs at a time); its runs, some "
             f"perhaps made by an earlier invocation or another study, took {meta['compute_min']:.0f} min "
             f"when made (a resumed run counts its last session only)"
             f"{' (--quick: a first look, not a result)' if meta['quick'] else ''}.",
             f"Paper: {study.source}; ViT-B, 800 epochs on SSv2.", "",
             "| arm | held-out accuracy % (mean ± std) | per seed | linear probe % | reconstruction loss "
             "| paper (SSv2 top-1 %) |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        acc = "—" if r["accuracy_mean"] is None else f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}"
        per = ", ".join(f"{a:.1f}" for a in r["accuracy_per_seed"])
        rec = ("—" if r["reconstruction_loss_mean"] is None
               else f"{r['reconstruction_loss_mean']:.3f} ± {r['reconstruction_loss_std']:.3f}")
        paper = "—" if r["paper"] is None else f"{r['paper']}"
        probe = "—" if r.get("probe_mean") is None else f"{r['probe_mean']:.1f} ± {r['probe_std']:.1f}"
        lines.append(f"| {r['arm']} | {acc} | {per} | {probe} | {rec} | {paper} |")
    lines += _paired_gaps(study, rows, meta)
    agreement = _agreement(rows)
    lines += ["", agreement] if agreement else []
    if agreement and "the same way" in agreement:
        n = agreement.split("Of the ")[1].split(" pairs")[0]
        same = agreement.split("we order ")[1].split(" the same")[0]
        if same != n:
            lines += ["", f"Where we differ, {_hypothesis(study, meta)}"]
    b = meta["budget"]
    lines += ["", f"Linear probe: a ridge classifier on the frozen encoder's mean-pooled features (what "
              f"the classification head reads), fitted on {b.get('probe_fit')} toy clips and scored on "
              f"{b.get('probe_score')} others, before any fine-tuning (`videomae_np.probe`); for an arm "
              f"without pretraining, an untrained encoder. Reconstruction losses of arms with different "
              f"targets or losses are not comparable with each other.", ""]
    text = "\n".join(lines)
    atomic_write_text(path, text)
    return text


def _curves(ax, study: Study, rs):
    """Numeric arms (ratio, depth, labelled clips): one line with error bars per series."""
    for series in dict.fromkeys(r["series"] for r in rs):
        line = sorted((r for r in rs if r["series"] == series), key=lambda r: r["x"])
        ax.errorbar([r["x"] for r in line], [r["accuracy_mean"] for r in line],
                    yerr=[r["accuracy_std"] for r in line], marker="o", capsize=4, label=series or "ours")
    papers = sorted((r for r in rs if r["paper"] is not None), key=lambda r: r["x"])
    if papers:
        ax2 = ax.twinx()
        ax2.plot([r["x"] for r in papers], [r["paper"] for r in papers], "s--", color="grey", label="paper")
        ax2.set_ylabel("paper: SSv2 top-1 (%)", color="grey")
        ax2.legend(loc="lower right", fontsize=8)
    if study.name == "data":
        ax.set_xscale("log", base=2)
        xs = sorted({r["x"] for r in rs})
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{int(x)}" for x in xs])
        ax.minorticks_off()
    ax.set_xlabel(study.xlabel)


def _bars(ax, rs):
    """Arms without a number (mask kinds, losses, pretraining sets): bars with error bars."""
    pos = np.arange(len(rs))
    ax.bar(pos, [r["accuracy_mean"] for r in rs], yerr=[r["accuracy_std"] for r in rs], capsize=4,
           color="tab:blue", alpha=0.8, label="ours (mean ± std over seeds)")
    papers = [(i, r["paper"]) for i, r in enumerate(rs) if r["paper"] is not None]
    if papers:
        ax.scatter([p[0] for p in papers], [p[1] for p in papers], marker="D", color="black", zorder=3,
                   label="paper: SSv2 top-1 (%)")
    ax.set_xticks(pos)
    ax.set_xticklabels([r["arm"] for r in rs], rotation=20, ha="right", fontsize=8)


def write_plot(path: Path, study: Study, rows, meta):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [r for r in rows if r["accuracy_mean"] is not None]
    numeric = [r for r in done if r["x"] is not None]
    other = [r for r in done if r["x"] is None]
    panels = [p for p in (numeric, other) if p] or [done]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 4.2), squeeze=False)
    chance = 100 / meta["classes"]
    for ax, rs in zip(axes[0], panels):
        if rs is numeric:
            _curves(ax, study, rs)
        else:
            _bars(ax, rs)
        ax.axhline(chance, color="red", lw=0.8, ls=":", label=f"chance ({chance:.0f}%)")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="upper left", fontsize=8)
    n = len(meta["seeds"])
    fig.suptitle(f"{study.title}: toy scale, {n} seed{'s' if n > 1 else ''}, mean ± std"
                 + (" (--quick)" if meta["quick"] else ""), fontsize=10)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path


def run_study(name: str, out, seeds: int = 3, quick: bool = False, jobs: int | None = None, log=print,
              pretrain_steps: int | None = None):
    """Run (or finish) one study into `out`; returns the summary rows. pretrain_steps: every arm's
    pretraining steps when not the default run's (the files are then named STUDY-<N>steps.*)."""
    from .data import toy
    if name not in STUDIES:
        raise ValueError(f"study must be one of {', '.join(STUDIES)}; got {name!r}")
    if seeds < 1:
        raise ValueError(f"--seeds: expected at least 1, found {seeds}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs: expected at least 1, found {jobs}")
    if pretrain_steps is not None:
        if quick:
            raise ValueError(f"--pretrain-steps: --quick has its own budget ({QUICK.pretrain_steps} "
                             f"steps); give one or the other, found both")
        if isinstance(pretrain_steps, bool) or not isinstance(pretrain_steps, numbers.Integral) \
                or pretrain_steps < 1:
            raise ValueError(f"--pretrain-steps: expected an integer >= 1, found {pretrain_steps!r}")
    study = STUDIES[name]
    budget = QUICK if quick else full_budget(study)
    if pretrain_steps is not None:
        budget = dataclasses.replace(budget, pretrain_steps=int(pretrain_steps))
    out = Path(out)
    root = out / ("runs-quick" if quick else "runs")
    root.mkdir(parents=True, exist_ok=True)
    work = [(arm, s) for s in range(seeds) for arm in study.arms]
    jobs = jobs or min(os.cpu_count() or 1, 2)
    log(f"ablate {name}: {len(study.arms)} arms x {seeds} seeds = {len(work)} jobs, {jobs} at a time, "
        f"runs in {root} (restartable: finished jobs are kept)")
    groups = _groups(work, budget)
    pre_left, pre_all, fine_left, fine_all = work_left(root, groups, budget)
    reused = "; the rest are reused" if (pre_left, fine_left) != (pre_all, fine_all) else ""
    log(f"to train: {pre_left} of {pre_all} pretraining runs ({budget.pretrain_steps} steps each) and "
        f"{fine_left} of {fine_all} fine-tunings ({budget.finetune_steps} steps each){reused}")
    t0 = time.perf_counter()
    records = []
    ctx = mp.get_context("spawn")        # fresh interpreters: no thread pools carried over a fork
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_jobs_in_turn, str(root), tuple(a for a, _ in group), budget, group[0][1]): group
                   for group in groups}
        pending, shown, last = set(futures), "", t0
        try:
            while pending:
                finished, pending = cf.wait(pending, timeout=PROGRESS_EVERY, return_when=cf.FIRST_COMPLETED)
                for r in (r for fut in finished for r in fut.result()):
                    records.append(r)
                    i = len(records)
                    rec = (f", reconstruction loss {r['reconstruction_loss']:.3f}"
                           if "reconstruction_loss" in r else "")
                    elapsed = time.perf_counter() - t0
                    eta = elapsed / i * (len(work) - i)
                    log(f"[{i:>2d}/{len(work)}] {r['arm']:<26s} seed {r['seed']}: accuracy "
                        f"{100 * r['accuracy']:5.1f}%, probe {100 * r['probe_accuracy']:5.1f}%{rec}  "
                        f"({r['seconds']:.0f} s; elapsed "
                        f"{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min)")
                if time.perf_counter() - last >= PROGRESS_EVERY:
                    now = pretraining_progress(root, [futures[f] for f in pending], budget)
                    if now and now != shown:
                        log(f"      {len(records)}/{len(work)} jobs done, "
                            f"{(time.perf_counter() - t0) / 60:.1f} min; pretraining: {now}")
                    shown, last = now, time.perf_counter()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    wall = time.perf_counter() - t0
    order = {(a.name, s): k for k, (a, s) in enumerate(work)}
    records.sort(key=lambda r: order[(r["arm"], r["seed"])])
    rows = summarise(study, records)
    meta = {"study": name, "title": study.title, "source": study.source, "quick": quick,
            "seeds": list(range(seeds)), "jobs": jobs, "budget": dataclasses.asdict(budget), "commit": _commit(),
            "wall_s": round(wall, 1), "compute_min": round(compute_minutes(records), 1), "classes": toy.ToySpec().num_classes,
            "arms": [dataclasses.asdict(a) for a in study.arms]}
    stem = name + ("-quick" if quick else "" if budget.pretrain_steps == PretrainSettings.steps
                   else f"-{budget.pretrain_steps}steps")
    atomic_write_text(out / f"{stem}.json", json.dumps(
        {**meta, "summary": rows, "results": records}, indent=2, default=list) + "\n")
    write_markdown(out / f"{stem}.md", study, rows, meta)
    write_plot(out / f"{stem}.png", study, rows, meta)
    log(f"wrote {out / (stem + '.json')}, .md and .png in {wall / 60:.1f} min")
    for r in rows:
        paper = f"   paper {r['paper']}" if r["paper"] is not None else ""
        log(f"  {r['arm']:<26s} {r['accuracy_mean']:5.1f} ± {r['accuracy_std']:4.1f} %  "
            f"(probe {r['probe_mean']:5.1f} ± {r['probe_std']:4.1f} %){paper}")
    return rows


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("study", choices=tuple(STUDIES), help="which ablation: " + ", ".join(
        f"{s.name} ({s.source.split(' (')[0]})" for s in STUDIES.values()))
    p.add_argument("--out", default="results", help="folder for STUDY.json/.md/.png and the runs (default results)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    p.add_argument("--quick", action="store_true",
                   help=f"a first look in minutes ({QUICK.pretrain_steps} pretraining steps, "
                        f"{QUICK.finetune_steps} fine-tuning steps; not a result): writes STUDY-quick.*")
    p.add_argument("--jobs", type=int, help="jobs at once, one thread each (default: 2 or the cores)")
    p.add_argument("--pretrain-steps", type=int, metavar="N",
                   help=f"pretraining steps of every arm (default: the default run's {PretrainSettings.steps}); "
                        f"writes STUDY-<N>steps.*. Half the default takes about half the time (masking from "
                        f"an empty folder: 40 min on 2 cores), but then most arms stay near chance on 128 "
                        f"labelled clips (results/*-6000steps.md)"),

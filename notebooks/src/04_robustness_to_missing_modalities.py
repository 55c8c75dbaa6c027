# %% [markdown]
# # Robustness to missing modalities
#
# **The question:** at test time a sensor fails or an input is noisy. How much accuracy does
# the model lose when a modality goes missing, one at a time or all at once, and does the way
# it was built and trained change that?
#
# mmbal's robustness protocol (`mmbal eval --workdir RUN --robustness`, or
# `mmbal.diagnostics.robustness.sweep` for your own evaluation function) corrupts the test
# split with seeded corruptions at rates 0 to 0.9: each example loses a modality with
# probability r (`missing`), or gets Gaussian noise of r times a few training standard
# deviations (`noise`), for each modality alone and for all of them at once. It reports
# the accuracy curves and three scores:
#
# * **relative robustness** (MultiBench): the mean accuracy over the swept rates,
# * **effective robustness** against a reference run (late fusion, as MultiBench): the
#   accuracy kept beyond what the reference keeps once both start from the same clean accuracy,
# * the **missing-modality gap** (BalGrad): accuracy with each modality removed entirely,
#   max minus min.
#
# We compare three models trained on the embedded UCI mfeat data (views `pix`, `fou`, `mor`):
# joint concat fusion (notebook 1), late fusion (the mean of per-modality classifiers, the
# reference) and concat fusion trained with modality dropout (each training example drops
# each view with probability 0.3; an absent view is a learned feature vector). Full size
# takes a few minutes on a free Colab CPU runtime.

# %% tags=["parameters"]
INSTALL = True    # pip-install mmbal from GitHub first (False when running from a checkout)
SMALL = False     # True: tiny models, few steps, one corruption seed (the test suite)
DATA_DIR = ""     # TFDS data dir for the embedded data set ("" = ~/tensorflow_datasets)
WORKDIR = "runs/04_robustness"

# %%
import pathlib
import shutil

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from mmbal.train import apply_overrides, default_config
from mmbal.train.cli import main as mmbal_cli
from mmbal.train.loop import train_and_evaluate

# %% [markdown]
# ## Train the three models
#
# `train_and_evaluate(config, workdir)` is `mmbal train`; the overrides are its command-line
# `field=value` arguments.

# %%
RUNS = {   # name: (workdir under WORKDIR, config overrides)
    "late fusion (reference)": ("late", ["model.unimodal=heads", "model.fusion=late"]),
    "joint (concat)": ("joint", ["model.fusion=concat"]),
    "concat + modality dropout": ("dropout", ["model.fusion=concat", "model.missing=learned",
                                              "train.modality_dropout=0.3"]),
}
common = ["data.modalities=pix,fou,mor"] + ([f"data.data_dir={DATA_DIR}"] if DATA_DIR else [])
if SMALL:
    RUNS.pop("concat + modality dropout")
    common += ["train.num_steps=60", "model.hidden_dim=32", "model.feature_dim=16",
               "eval.linear_probe=False", "log.progress=False"]

workdirs = {}
for name, (directory, overrides) in RUNS.items():
    workdirs[name] = pathlib.Path(WORKDIR) / directory
    shutil.rmtree(workdirs[name], ignore_errors=True)
    print(f"== {name}")
    train_and_evaluate(apply_overrides(default_config(), common + overrides), workdirs[name])

# %% [markdown]
# ## The sweep
#
# The same seeded corruptions for every model, so their curves are comparable. The reference
# is evaluated first; the others get their effective robustness against it. Each call writes
# `robustness.json`, `robustness.md` and a plot to `RUN/robustness/` and returns the numbers.

# %%
KINDS = "missing" if SMALL else "missing,noise"
SEEDS = "0" if SMALL else "0,1,2"
reference = workdirs["late fusion (reference)"]
sweeps = {}
for name, workdir in workdirs.items():
    args = ["eval", "--workdir", str(workdir), "--robustness", "--kinds", KINDS, "--seeds", SEEDS]
    if workdir != reference:
        args += ["--reference", str(reference)]
    print(f"== {name}")
    sweeps[name] = mmbal_cli(args)

# %% [markdown]
# ## Accuracy as modalities go missing
#
# One panel per corrupted modality (`all`: every view corrupted independently at rate r);
# the bands are ± one standard deviation over the corruption seeds.

# %%
kinds = KINDS.split(",")
targets = list(next(iter(sweeps.values()))["curves"]["missing"])
fig, axes = plt.subplots(len(kinds), len(targets), figsize=(3.4 * len(targets), 3.1 * len(kinds)),
                         squeeze=False, sharey=True)
for row, kind in enumerate(kinds):
    for col, target in enumerate(targets):
        ax = axes[row, col]
        for name, sweep in sweeps.items():
            curve = sweep["curves"][kind][target]
            rates, mean, std = (np.asarray(v) for v in (sweep["rates"], curve["accuracy"], curve["std"]))
            ax.plot(rates, 100 * mean, marker="o", ms=3, label=name)
            ax.fill_between(rates, 100 * (mean - std), 100 * (mean + std), alpha=0.2)
        ax.set(title=f"{kind}: {target}", xlabel="rate" if kind == "missing" else "severity / noise scale")
        ax.grid(alpha=0.3)
    axes[row, 0].set_ylabel("test accuracy (%)")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The scores

# %%
names = list(sweeps)
modalities = next(iter(sweeps.values()))["modalities"]
header = ["run", "clean acc"]
for kind in kinds:
    header += [f"{kind} {t}: RR / ER" for t in targets]
header += [f"{m} removed" for m in modalities] + ["gap"]
lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
for name in names:
    sweep = sweeps[name]
    cells = [name, f"{100 * sweep['curves']['missing'][targets[0]]['accuracy'][0]:.1f}"]
    for kind in kinds:
        for target in targets:
            curve = sweep["curves"][kind][target]
            effective = curve.get("effective_robustness")
            cells.append(f"{100 * curve['relative_robustness']:.1f} / "
                         + ("—" if effective is None else f"{100 * effective:+.1f}"))
    cells += [f"{100 * sweep['removed'][m]:.1f}" for m in modalities]
    cells.append(f"{100 * sweep['missing_gap']:.1f}")
    lines.append("| " + " | ".join(cells) + " |")
display(Markdown("Test split, %; RR: relative robustness (mean accuracy over the rates), "
                 "ER: effective robustness against late fusion.\n\n" + "\n".join(lines)))

# %% [markdown]
# ## Reading it
#
# The concat model leans on `pix` (notebook 1), so it loses most when `pix` goes missing and
# its effective robustness against late fusion is negative; late fusion averages per-view
# classifiers and degrades more gracefully, with a smaller missing-modality gap. Training
# with modality dropout teaches the concat model to do without a view. In our full-size run
# (CPU, training seed 0, corruption seeds 0-2) the concat model kept 68.6 % with `pix`
# removed against late fusion's 83.4 % (effective robustness -6.2 points on `pix` missing,
# gap 27.4 against 13.8); with modality dropout it kept 82.0 % (effective robustness -0.5,
# gap 15.0) at the same clean accuracy, 97.8 %. Under noise all three stayed within about two
# points of each other. The README's table (*Robustness to missing and noisy modalities*)
# has the same protocol on the default runs, with OGM-GE and MLA. These are single training
# runs: read the differences as an example of the protocol, not as a ranking.

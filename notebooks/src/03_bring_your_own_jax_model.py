# %% [markdown]
# # Bring your own JAX model
#
# **The question:** I already have a multimodal model and a training loop in JAX. What do I
# change to use mmbal's balancing methods and diagnostics with them?
#
# Nothing in mmbal needs its own models. This notebook writes a small two-tower model in
# plain JAX (a dict of arrays, no mmbal, no Flax), with its own loss and its own optax train
# step, and then changes three things:
#
# 1. the loss returns its terms as a vector instead of their sum,
# 2. `mmbal.objective_grads` gives the gradient of each term from one forward pass,
# 3. mmbal's transforms (here PCGrad and OGM-GE) go in front of the optimizer.
#
# Finally `mmbal.diagnostics.diagnose` measures how much each version of the model uses each
# modality. It runs in about a minute on a free Colab CPU runtime.

# %% tags=["parameters"]
INSTALL = True    # pip-install mmbal from GitHub first (False when running from a checkout)
SMALL = False     # True: tiny model and few steps (the test suite)
DATA_DIR = ""     # TFDS data dir for the embedded data set ("" = ~/tensorflow_datasets)

# %%
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from IPython.display import Markdown, display

import mmbal
from mmbal import data as mmdata
from mmbal.diagnostics import diagnose

NAMES = ("pix", "fou")            # a strong and a weak view of the same digits
STEPS = 80 if SMALL else 600
WIDTH = 32 if SMALL else 64
BATCH, AUX_WEIGHT = 64, 0.5

# %% [markdown]
# ## Data
#
# Any arrays will do; here the two views of the UCI digits that ship with mmbal, as numpy
# arrays `{"pix": [N, 240], "fou": [N, 76], "label": [N]}`.

# %%
data = mmdata.load("uci_mfeat", data_dir=DATA_DIR or None, modalities=NAMES,
                   val_fraction=0.15, in_memory=True)
train, test = data.train.to_numpy(), data.test.to_numpy()
DIMS = {m: train[m].shape[1] for m in NAMES}
NUM_CLASSES = data.spec.num_classes
print(DIMS, len(train["label"]), "train /", len(test["label"]), "test examples")

# %% [markdown]
# ## Your model, your loss, your train step
#
# A tower per modality, the towers' outputs concatenated into a classifier, and an auxiliary
# classifier per tower (a common trick to keep every tower learning). The loss is the fused
# cross-entropy plus `AUX_WEIGHT` times each auxiliary one.

# %%
def dense(key, fan_in, fan_out):
    return {"w": jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in),
            "b": jnp.zeros(fan_out)}


@jax.jit
def init_params(key):
    keys = iter(jax.random.split(key, 3 * len(NAMES) + 1))
    params = {"classifier": dense(next(keys), WIDTH * len(NAMES), NUM_CLASSES)}
    for m in NAMES:
        params[f"{m}_tower"] = [dense(next(keys), DIMS[m], WIDTH), dense(next(keys), WIDTH, WIDTH)]
        params[f"{m}_aux"] = dense(next(keys), WIDTH, NUM_CLASSES)
    return params


def forward(params, inputs):
    """-> (fused logits [B, C], {modality: auxiliary logits [B, C]})."""
    layer = lambda p, x: x @ p["w"] + p["b"]
    towers = {}
    for m in NAMES:
        first, second = params[f"{m}_tower"]
        towers[m] = jax.nn.relu(layer(second, jax.nn.relu(layer(first, inputs[m]))))
    fused = layer(params["classifier"], jnp.concatenate([towers[m] for m in NAMES], axis=-1))
    return fused, {m: layer(params[f"{m}_aux"], towers[m]) for m in NAMES}


def loss_fn(params, batch):
    fused, aux = forward(params, batch)
    ce = lambda logits: optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return ce(fused) + AUX_WEIGHT * sum(ce(aux[m]) for m in NAMES)


plain_tx = optax.adam(1e-3)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def plain_train_step(params, opt_state, batch, key):
    del key   # unused here; the mmbal step below needs one
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = plain_tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

# %% [markdown]
# ## The three changes
#
# **1. The loss as a vector.** The same terms, weighted as before, returned separately (and
# the auxiliary logits as `aux`, for OGM-GE's per-modality confidence).
#
# **2. Per-objective gradients.** mmbal needs to know which parameters each objective can
# touch: a label per parameter leaf, the modality that owns it or `"shared"`. For a dict of
# arrays that is one `jax.tree.map`; for a Flax NNX model
# `mmbal.param_labels(model, {"pix": [model.pix_tower, ...], ...})` builds it from the
# module structure. An objective named like a label (`"pix"`) touches only that label's
# parameters, so the two auxiliary objectives share a backward pass.
#
# **3. Transforms in front of the optimizer.** PCGrad projects away the conflicting parts of
# the three gradients and sums them; OGM-GE then damps the encoder of the modality whose
# auxiliary head is more confident (and adds its Gaussian noise).

# %%
OBJECTIVES = ("fused",) + NAMES


def losses_fn(params, batch):                                       # change 1
    fused, aux = forward(params, batch)
    ce = lambda logits: optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    values = jnp.stack([ce(fused)] + [AUX_WEIGHT * ce(aux[m]) for m in NAMES])
    return values, jnp.stack([aux[m] for m in NAMES])              # aux: [M, B, C]


owner = lambda name: next((m for m in NAMES if name.startswith(m + "_")), mmbal.SHARED)
labels = {name: jax.tree.map(lambda _: owner(name), sub) for name, sub in init_params(jax.random.key(0)).items()}

mmbal_tx = optax.chain(                                             # change 3
    mmbal.transforms.pcgrad(num_objectives=len(OBJECTIVES)),   # K fixed: no recompile
    mmbal.transforms.ogm_ge(labels, alpha=0.8),
    optax.adam(1e-3))


@functools.partial(jax.jit, donate_argnums=(0, 1))
def mmbal_train_step(params, opt_state, batch, key):
    res = mmbal.objective_grads(losses_fn, params, batch, objectives=OBJECTIVES,   # change 2
                                labels=labels, has_aux=True)
    confidence = mmbal.scores.true_class_confidence(res.aux, batch["label"], NAMES)
    updates, opt_state = mmbal_tx.update(res.grads, opt_state, params,
                                         confidence=confidence, key=key)
    return optax.apply_updates(params, updates), opt_state


print("labels:", labels["fou_tower"][0], labels["classifier"])
supports = mmbal.grads.default_supports(OBJECTIVES, labels)
print("backward passes for", OBJECTIVES, "->", mmbal.plan_backward_passes(supports))

# %% [markdown]
# The per-objective gradients are exact: the same numbers as differentiating each term
# separately (here all at once with `jax.jacrev`), at the cost of two backward passes.

# %%
params0 = init_params(jax.random.key(0))
probe_batch = {k: v[:BATCH] for k, v in train.items()}
stacked = jax.jit(lambda p, b: mmbal.objective_grads(
    losses_fn, p, b, objectives=OBJECTIVES, labels=labels, has_aux=True).grads)(params0, probe_batch)
reference = jax.jit(jax.jacrev(lambda p, b: losses_fn(p, b)[0]))(params0, probe_batch)
max_difference = max(float(jnp.abs(a - b).max())
                     for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(reference)))
print(f"largest difference to jax.jacrev: {max_difference:.2e}")

# %% [markdown]
# ## Train both versions
#
# The same initial parameters, the same batches; only the train step differs.

# %%
def fit(train_step, tx, seed=0):
    params = init_params(jax.random.key(seed))
    opt_state = tx.init(params)
    rng, key, order = np.random.default_rng(seed), jax.random.key(seed), np.empty(0, np.int64)
    for step in range(STEPS):
        if len(order) < BATCH:
            order = np.concatenate([order, rng.permutation(len(train["label"]))])
        index, order = order[:BATCH], order[BATCH:]
        batch = {k: v[index] for k, v in train.items()}
        params, opt_state = train_step(params, opt_state, batch, jax.random.fold_in(key, step))
    return params


trained = {"your train step": fit(plain_train_step, plain_tx),
           "with mmbal (PCGrad + OGM-GE)": fit(mmbal_train_step, mmbal_tx)}

# %% [markdown]
# ## Diagnose both
#
# `diagnose` takes any `apply(params, inputs) -> logits`. A removed modality is replaced by
# its mean training input (`fill="mean"`, the values a model sees on average), so the
# Shapley values and utilisations say how much the fused prediction depends on each view.

# %%
apply = lambda params, inputs: forward(params, inputs)[0]
test_batch = dict(test, mask=np.ones(len(test["label"]), bool))
train_means = {m: train[m].mean(0) for m in NAMES}

rows = ["| train step | fused acc | " + " | ".join(f"{m} aux head acc" for m in NAMES) + " | "
        + " | ".join(f"Shapley {m}" for m in NAMES) + " | "
        + " | ".join(f"utilisation {m}" for m in NAMES) + " |",
        "|---|" + "---:|" * (1 + 3 * len(NAMES))]
diagnoses = {}
for name, params in trained.items():
    diagnoses[name] = d = diagnose(apply, params, [test_batch], NAMES, fill=train_means)
    _, aux = forward(params, test)
    aux_acc = [float((aux[m].argmax(-1) == test["label"]).mean()) for m in NAMES]
    rows.append(f"| {name} | {100 * d['accuracy']:.1f} | "
                + " | ".join(f"{100 * a:.1f}" for a in aux_acc) + " | "
                + " | ".join(f"{100 * d['shapley']['accuracy'][m]:.1f}" for m in NAMES) + " | "
                + " | ".join(f"{d['utilisation'][m]:.3f}" for m in NAMES) + " |")
display(Markdown(f"Test set, accuracy and Shapley values in %, {STEPS} steps, one seed:\n\n"
                 + "\n".join(rows)))

# %% [markdown]
# ## What changed, and what did not
#
# The model, the data pipeline and the loop stayed as they were; the step gained one call
# (`objective_grads`) and the optimizer two transforms. In our full-size run (CPU, one seed)
# the fused accuracy went from 97.4 to 96.8 %, while the Shapley value of `fou` rose from
# 19.7 to 25.9 points and its utilisation from 0.045 to 0.097: OGM-GE moved some of the
# model's reliance from `pix` to `fou`, at 0.6 points of fused accuracy. Any other mmbal transform drops in
# the same way: `mmbal.transforms.mmpareto(NAMES, labels)` instead of PCGrad, `msam` with the
# extra argument `grad_fn`, `agm`, `cggm`, `balgrad`... (the README lists them with their
# extra arguments). Whether a method helps is a question for your data: compare the
# diagnoses above before and after, over a few seeds, as notebook 2 does.

"""Writes ``configs/<dataset>/<method>.py`` for every balancing method over the data set's
``joint.py`` (``BASE = "joint.py"``), with the model each method needs. Existing files are
kept (hand-tuned ones such as ``ogm_ge.py``).

  python configs/make_method_configs.py crema_d "CREMA-D"
"""
import pathlib, sys

METHODS = {
    # name: (title, model overrides, method overrides)
    "unimodal": ("Each encoder trained alone by its own head (the unimodal baselines)", 'unimodal="heads"', ""),
    "ogm_ge": ("OGM-GE (Peng et al., CVPR 2022)", 'unimodal="split_head"', ""),
    "agm": ("AGM (Li et al., ICCV 2023)", 'unimodal="split_head"', ""),
    "cggm": ("CGGM (Guo et al., NeurIPS 2024)", 'unimodal="probe"', ""),
    "miles": ("MILES (Guerra-Manzanares & Shamout, IJCNN 2025)", 'unimodal="probe"', ""),
    "gradient_blending": ("G-Blending (Wang et al., CVPR 2020)", 'unimodal="heads"', ""),
    "pcgrad": ("PCGrad (Yu et al., NeurIPS 2020)", 'unimodal="heads"', ""),
    "mmpareto": ("MMPareto (Wei & Hu, ICML 2024)", 'unimodal="heads"', ""),
    "balgrad": ("BalGrad (Kwon et al., NAACL 2025; mmbal's documented reconstruction)", 'unimodal="heads"', ""),
    "sam": ("SAM (Foret et al., ICLR 2021)", 'unimodal="probe"', ""),
    "msam": ("M-SAM (Nowdeh et al., NeurIPS 2025)", 'unimodal="probe"', ""),
    "mnl": ("MNL (Gong et al., NeurIPS 2025), on late fusion of unimodal heads", 'fusion="late", unimodal="heads"', ""),
    "pmr": ("PMR (Fan et al., CVPR 2023)", 'unimodal="probe"', ""),
    "mla": ("MLA (Zhang et al., CVPR 2024): shared head, entropy-weighted late fusion", 'fusion="late_entropy", unimodal="shared_head"', ""),
}


# Methods that run on some tasks only (mmbal.train.methods.TASK_LIMITS).
TASK_LIMITS = {"mnl": ("classification",), "pmr": ("classification", "regression")}


# mmbal's regression forms of classification methods (README, "Regression").
REGRESSION_FORMS = {
    "agm": "its scores are the (floored) L1 errors of the Shapley unimodal outputs",
    "msam": "its subset values are sign agreements (method.msam.value=loss: negative L1 errors)",
    "balgrad": "its KL is between unit-scale Laplace predictive distributions (L1's)",
    "pmr": "its prototypes are feature means of the labels' metric bins (eval.regression_bins)",
}


def write(dataset: str, title: str, task: str = "classification"):
  """Writes the missing method configs. For a ``multilabel`` or ``regression`` data set
  (``python configs/make_method_configs.py mmimdb MM-IMDb multilabel``) the methods that do
  not run on its task are left out and CGGM's direction term uses the head weights."""
  skip = [name for name, tasks in TASK_LIMITS.items() if task not in tasks]
  folder = pathlib.Path("configs") / dataset
  assert (folder / "joint.py").is_file(), folder
  for name, (what, model, method) in METHODS.items():
    if name in skip or (folder / f"{name}.py").exists():
      continue
    if name == "cggm" and task != "classification":   # its gradient form needs softmax heads
      method = 'cggm=dict(direction="weights")'
    extra = f", {method}" if method else ""
    form = (f"On this regression task {REGRESSION_FORMS[name]}.\n"
            if task == "regression" and name in REGRESSION_FORMS else "")
    (folder / f"{name}.py").write_text(
        f'"""{what}.\n\nOn {title}, with the data, encoders and optimiser of `joint.py`; the method\'s\n'
        f'settings are mmbal\'s defaults (`mmbal.train.config`).\n{form}\n'
        f'  mmbal train --config configs/{dataset}/{name}.py --workdir runs/{dataset}_{name}\n"""\n'
        f'BASE = "joint.py"\n\n\n'
        f'def get_config():\n'
        f'  return dict(model=dict({model}), method=dict(name="{name}"{extra}))\n')


if __name__ == "__main__":
  if len(sys.argv) not in (3, 4):
    sys.exit(__doc__)
  write(sys.argv[1], sys.argv[2], *sys.argv[3:])

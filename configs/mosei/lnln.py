"""LNLN (Zhang, Wang, Yu, NeurIPS 2024) on CMU-MOSEI: robust sentiment regression with
missing data.

The paper's settings (Table 1; `../shared` reference §6.3): T = 8 tokens of width d = 128,
8 heads, loss weights alpha (completeness) 0.9, beta (adversarial) 0.8, gamma
(reconstruction) 0.1, MSE task loss; AdamW lr 1e-4, weight decay 1e-4, a 10 % linear
warm-up then cosine decay, 200 epochs. Training uses the random-missing protocol; the
checkpoint is selected on validation and the test split is scored at missing rates
0.0 ... 0.9 (3 seeds), averaged (`results.json`: `lnln_missing`). The paper reports on MOSEI
(average over rates) Acc-7 45.42, Acc-5 46.17, Acc-2 76.30 / 78.19, F1 77.77 / 79.95,
MAE 0.692, Corr 0.530 (see the README); the language features are the pickles' frozen BERT
features here, where the official code fine-tunes BERT.

  mmbal train --config configs/mosei/lnln.py --workdir runs/mosei_lnln data.data_dir=...
"""
BASE = "joint.py"


def get_config():
  return dict(
      method=dict(name="lnln", lnln=dict(dim=128, num_tokens=8, heads=8, fusion_depth=4,
                                         official_code=False, cc=0.9, adv=0.8, rec=0.1)),
      optimizer=dict(name="adamw", learning_rate=1e-4, weight_decay=1e-4, schedule="cosine",
                     warmup_steps=5100),   # 10 % of 200 epochs x 255 steps (16326 / 64)
      train=dict(batch_size=64, num_epochs=200),
  )

"""Training: config, the jitted step, the loop, checkpoints and the CLI."""
from mmbal.train.config import apply_overrides, default_config, load_config
from mmbal.train.step import TrainState, classification_objectives, make_eval_step, make_train_step

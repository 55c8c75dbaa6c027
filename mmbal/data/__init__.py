"""Data layer: TFDS builders (registered on import) and grain input pipelines."""

from mmbal.data._image_text import read_embeddings
from mmbal.data._split import stratified_split
from mmbal.data.arrays import Arrays
from mmbal.data.av_mnist import AvMnist
from mmbal.data.ave import Ave
from mmbal.data.crema_d import CremaD
from mmbal.data.easy_vqa import EasyVqa
from mmbal.data.easy_vqa import question_only_baseline
from mmbal.data.hateful_memes import HatefulMemes
from mmbal.data.iemocap import Iemocap
from mmbal.data.kinetics_sounds import KineticsSounds
from mmbal.data.mmimdb import MmImdb
from mmbal.data.mmsa import Mmsa
from mmbal.data.pipeline import DataSpec
from mmbal.data.pipeline import DEFAULT_READ_OPTIONS
from mmbal.data.pipeline import eval_batches
from mmbal.data.pipeline import load
from mmbal.data.pipeline import Source
from mmbal.data.pipeline import spec_from_builder
from mmbal.data.pipeline import Splits
from mmbal.data.pipeline import steps_per_epoch
from mmbal.data.pipeline import train_iterator
from mmbal.data.prior_vqa import generate as generate_prior_vqa
from mmbal.data.prior_vqa import PriorVQAConfig
from mmbal.data.prior_vqa import Vocabulary
from mmbal.data.synthetic_imbalance import SyntheticImbalance
from mmbal.data.synthetic_imbalance import SyntheticImbalanceConfig
from mmbal.data.synthetic_imbalance import SyntheticModality
from mmbal.data.uci_mfeat import UciMfeat
from mmbal.data.ucf101 import Ucf101
from mmbal.data.upmc_food101 import UpmcFood101
from mmbal.data.vggsound import VggSound

__all__ = [
    "Arrays",
    "AvMnist",
    "Ave",
    "CremaD",
    "DEFAULT_READ_OPTIONS",
    "DataSpec",
    "EasyVqa",
    "HatefulMemes",
    "Iemocap",
    "KineticsSounds",
    "MmImdb",
    "Mmsa",
    "PriorVQAConfig",
    "Source",
    "Splits",
    "SyntheticImbalance",
    "SyntheticImbalanceConfig",
    "SyntheticModality",
    "UciMfeat",
    "Ucf101",
    "UpmcFood101",
    "VggSound",
    "Vocabulary",
    "eval_batches",
    "generate_prior_vqa",
    "load",
    "question_only_baseline",
    "read_embeddings",
    "spec_from_builder",
    "steps_per_epoch",
    "stratified_split",
    "train_iterator",
]

"smalldiffusion: diffusion models in a few hundred lines, exported from the book's notebooks."
__version__ = "0.5.0"

from .diffusion import (Schedule, ScheduleLogLinear, ScheduleDDPM, ScheduleLDM, ScheduleCosine, ScheduleSigmoid,
                        ScheduleFlow, ScheduleLogNormalFlow, generate_train_sample, training_loop, samples)
from .data import Swissroll, DatasaurusDozen, MappedDataset, img_train_transform, img_normalize, TreeDataset
from .model import (ModelMixin, Scaled, PredX0, PredV, PredFlow, TimeInputMLP, IdealDenoiser, get_sigma_embeds,
                    SigmaEmbedderSinCos, CondEmbedderLabel, ConditionalMLP, TimestepEmbedder)
from .model_dit import DiT
from .model_unet import Unet
from .samplers import *
from . import data, diffusion, model, model_dit, model_unet

__all__ = ['Schedule', 'ScheduleLogLinear', 'ScheduleDDPM', 'ScheduleLDM', 'ScheduleCosine', 'ScheduleSigmoid',
           'ScheduleFlow', 'ScheduleLogNormalFlow', 'generate_train_sample', 'training_loop', 'samples',
           'Swissroll', 'DatasaurusDozen', 'MappedDataset', 'img_train_transform', 'img_normalize', 'TreeDataset',
           'ModelMixin', 'Scaled', 'PredX0', 'PredV', 'PredFlow', 'TimeInputMLP', 'IdealDenoiser', 'get_sigma_embeds',
           'SigmaEmbedderSinCos', 'CondEmbedderLabel', 'ConditionalMLP', 'TimestepEmbedder', 'DiT', 'Unet',
           'data', 'diffusion', 'model', 'model_dit', 'model_unet']

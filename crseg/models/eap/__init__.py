"""EAP: answer-to-image attention capture, coarse head / aggregator, point sampler."""
from .capture import (CaptureUnavailableError, EAPCapture, check_capturable,
                      register_eap_attention)
from .coarse_head import AttentionAggregator, EAPCoarseHead
from .points import PointSampler

__all__ = ['EAPCapture', 'register_eap_attention', 'EAPCoarseHead', 'AttentionAggregator',
           'PointSampler', 'check_capturable', 'CaptureUnavailableError']

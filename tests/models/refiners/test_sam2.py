"""Sam2Refiner vs transformers' Sam2Model / Sam2Processor (shared tests: hf_sam_cases.py)."""
import pytest

from crseg.models.refiners import Sam2Refiner
from hf_sam_cases import *  # noqa: F401,F403  (the shared tests)


@pytest.fixture
def refiner_cls():
    return Sam2Refiner


@pytest.fixture
def family():
    return 'sam2'


@pytest.fixture
def other_family():
    return 'sam3_tracker'

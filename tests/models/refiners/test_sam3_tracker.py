"""Sam3TrackerRefiner vs transformers' Sam3TrackerModel / Sam3TrackerProcessor (shared tests:
hf_sam_cases.py)."""
import pytest

from crseg.models.refiners import Sam3TrackerRefiner
from hf_sam_cases import *  # noqa: F401,F403  (the shared tests)


@pytest.fixture
def refiner_cls():
    return Sam3TrackerRefiner


@pytest.fixture
def family():
    return 'sam3_tracker'


@pytest.fixture
def other_family():
    return 'sam2'

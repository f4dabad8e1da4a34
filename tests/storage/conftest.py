from __future__ import annotations

import random

import pytest
from storage_helpers import Clock

from respkv.storage.faultfs import FaultFileSystem


@pytest.fixture
def fs() -> FaultFileSystem:
    return FaultFileSystem(random.Random(1234))


@pytest.fixture
def clock() -> Clock:
    return Clock()

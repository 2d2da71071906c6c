"""Test session set-up: offline Hub, a throw-away HF_HOME, shared fixtures."""

import os
import tempfile

# Must happen before datasets / huggingface_hub are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="dgqa-test-hf-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

from tests.fixtures import official  # noqa: E402


@pytest.fixture(scope="session")
def photos():
    """Real photos from scikit-image, as uint8 RGB crops (see tests/fixtures/official.py)."""
    return official.reference_crops()

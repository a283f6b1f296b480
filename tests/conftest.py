import pytest

from tests.helpers import SHARED_DATA, write_frame_dataset


@pytest.fixture(scope="session")
def frame_root(tmp_path_factory):
    """A tiny dataset (3 classes, 5 videos each, 12-20 frames of 80x60) in the preprocessed layout."""
    return write_frame_dataset(tmp_path_factory.mktemp("frames"))


@pytest.fixture
def shared_data():
    """../shared/data beside the project; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


# The longest files, started first: with one worker per core (pyproject.toml's -n auto), the
# demo starting late would keep its worker busy long after the others are done.
LONGEST_FIRST = ("test_demo.py", "test_gpu_check.py", "test_real_clips.py", "test_temporal.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

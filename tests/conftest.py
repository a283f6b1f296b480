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


# Seconds each longer file took in the suite (pytest --durations=0, 2 cores, 2026-12-07). Files
# start longest first (with --dist loadfile a file runs on one worker): with one worker per core
# none then finishes long after the other, as a long file started last would.
FILE_SECONDS = {
    "test_demo.py": 112, "test_readme.py": 50, "test_temporal.py": 42, "test_clip_stream.py": 36,
    "test_training.py": 33, "test_real_clips.py": 28, "test_export.py": 27,
    "test_faults_training.py": 25, "test_app.py": 23, "test_video_archs.py": 22, "test_predict.py": 22, "test_features.py": 22,
    "test_distributed.py": 18, "test_cam.py": 18, "test_fusion.py": 17,
    "test_extraction_workers.py": 17, "test_faults_extraction.py": 11, "test_live.py": 11,
    "test_flow_clip.py": 10, "test_real_weights.py": 10, "test_gpu_check.py": 9,
    "test_video_archs_tools.py": 8, "test_train_from_videos.py": 8, "test_video_frames.py": 8,
    "test_backbones.py": 7, "test_tvl1_torch.py": 7, "test_extraction.py": 6,
    "test_faults_predict.py": 6, "test_network.py": 5,
}  # fmt: skip


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))

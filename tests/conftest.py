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


# Seconds each longer file took in the suite (pytest --durations=0, 2 cores, 2026-12-07, the
# faster of the two machines measured). Files start longest first (with --dist loadfile a file
# runs on one worker): with one worker per core none then finishes long after the other, as a
# long file started last would.
FILE_SECONDS = {
    "test_demo.py": 88, "test_readme.py": 26, "test_export.py": 21, "test_video_archs.py": 17,
    "test_clip_stream.py": 15, "test_real_clips.py": 15, "test_temporal.py": 14,
    "test_distributed.py": 14, "test_training.py": 13, "test_features.py": 12, "test_app.py": 11,
    "test_faults_training.py": 11, "test_predict.py": 10, "test_extraction_workers.py": 9,
    "test_fusion.py": 8, "test_cam.py": 7, "test_backbones.py": 6, "test_faults_extraction.py": 6,
    "test_live.py": 6, "test_flow_clip.py": 6, "test_unknown.py": 6, "test_real_weights.py": 5,
    "test_gpu_check.py": 5, "test_video_archs_tools.py": 4, "test_train_from_videos.py": 4,
    "test_network.py": 3, "test_video_frames.py": 3, "test_extraction.py": 3,
}  # fmt: skip


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))

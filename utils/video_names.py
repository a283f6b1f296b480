"""One spelling-insensitive key for a video name, shared by the frame index, score files and fusion."""

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm")


def video_key(name: str) -> str:
    """A spelling-insensitive key for a video name.

    Matches ``v_HandStandPushups_g01_c01`` with ``v_HandstandPushups_g01_c01``, with the
    reference implementation's ``HandstandPushups_g01_c01`` and with ``x/v_Name.avi``.
    """
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    if stem.lower().endswith(VIDEO_EXTENSIONS):
        stem = stem.rsplit(".", 1)[0]
    if stem.startswith("v_"):
        stem = stem[2:]
    return stem.lower()

import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars are for people, not test logs


@pytest.fixture(scope="session")
def two_room_data(tmp_path_factory):
    """A small two-room dataset shared by the read-only tests."""
    from wmkit.config import CollectConfig
    from wmkit.envs.collect import collect

    out = tmp_path_factory.mktemp("data") / "two-room"
    collect(CollectConfig(env="two-room", episodes=12, steps=30, workers=1, episodes_per_chunk=5,
                          obs_keys=("rgb", "depth", "proprio")), out, show_progress=False)
    return out

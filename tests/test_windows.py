import pytest

from worker.windows import (
    WindowPlan,
    WindowSettings,
    plan_windows,
    song_frames,
    song_samples,
    steps_for,
)


@pytest.mark.parametrize(
    ("total", "window", "stride", "expected"),
    [
        (100, 1500, 900, [(0, 100)]),
        (1500, 1500, 900, [(0, 1500)]),
        (1501, 1500, 900, [(0, 1500), (600, 1)]),
        (9000, 1500, 900, [(0, 1500)] + [(600, 900)] * 8 + [(600, 300)]),
        (550, 200, 125, [(0, 200), (75, 125), (75, 125), (75, 100)]),
        (10, 4, 4, [(0, 4), (0, 4), (0, 2)]),
    ],
)
def test_plan_windows(total, window, stride, expected):
    plans = plan_windows(total, window, stride)
    assert plans == [WindowPlan(p, n) for p, n in expected]
    assert sum(p.new_frames for p in plans) == total


@pytest.mark.parametrize(
    ("duration", "rate", "hop", "samples", "frames"),
    [
        (180, 32000, 640, 5_760_000, 9000),
        (11, 8000, 160, 88_000, 550),
        (1.5, 8000, 160, 12_000, 75),
        (0.01, 8000, 160, 80, 1),
        (2.00003, 8000, 160, 16_000, 100),
        (2.0001, 8000, 160, 16_001, 101),
    ],
)
def test_song_length(duration, rate, hop, samples, frames):
    assert song_samples(duration, rate) == samples
    assert song_frames(duration, rate, hop) == frames


def test_window_settings_in_frames():
    assert WindowSettings().frames(50) == (1500, 900)
    assert WindowSettings(4, 2.5).frames(50) == (200, 125)


@pytest.mark.parametrize(("window", "stride"), [(30, 0), (30, 31), (0, 0), (-1, 1)])
def test_window_settings_reject_bad_values(window, stride):
    with pytest.raises(ValueError):
        WindowSettings(window, stride)


def test_delay_pattern_adds_codebooks_minus_one_steps():
    assert steps_for(1500, 4) == 1503


def test_stereo_steps_add_the_largest_pair_delay():
    assert steps_for(1500, 8, audio_channels=2) == 1503
    assert steps_for(1, 4, audio_channels=1) == 4

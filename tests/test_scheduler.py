"""Batched long-form generation: lengths, continuation prompts, failures and time shares."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contract.prompts import Job
from tests.engines import FakeEngine, SpyEngine
from worker.engine.generation import song_seed
from worker.run.scheduler import BatchScheduler, Callbacks, SongState, new_song
from worker.windows import WindowPlan, WindowSettings

ROOT = Path(__file__).resolve().parent.parent
WINDOW = WindowSettings(4, 2.5)


def make_songs(engine, durations):
    jobs = [Job(i + 1, f"song {i} piano", d, f"s{i}.wav") for i, d in enumerate(durations)]
    return [new_song(job, song_seed(42, job), WINDOW, engine) for job in jobs]


def run(engine, songs, batch_size=3):
    done, failed = {}, {}
    callbacks = Callbacks(
        on_done=lambda song, audio: done.__setitem__(song.job.file_name, (song, audio)),
        on_failed=lambda song, error: failed.__setitem__(song.job.file_name, error),
    )
    BatchScheduler(engine, batch_size, callbacks).run(songs)
    return done, failed


def test_songs_of_different_lengths_share_batches_and_each_gets_its_exact_length(tiny_engine):
    spy = SpyEngine(tiny_engine)
    durations = [11, 1.5, 6.02, 4, 0.3]
    done, failed = run(spy, make_songs(spy, durations))
    assert failed == {}
    for i, duration in enumerate(durations):
        song, audio = done[f"s{i}.wav"]
        assert audio.shape == (round(duration * 8000),)
        assert song.codes.shape[-1] == song.total_frames
    assert max(len(call) for call in spy.calls) == 3
    # 5 songs, 3 slots: the two waiting songs joined as soon as the first batch freed up.
    assert len(spy.calls) < sum(len(s.plans) for s, _ in done.values())


def test_each_window_is_prompted_with_its_own_songs_last_codes(tiny_engine):
    spy = SpyEngine(tiny_engine)
    done, _ = run(spy, make_songs(spy, [11, 9, 7]))
    final_codes = {f"song {i} piano": done[f"s{i}.wav"][0].codes for i in range(3)}
    have = {prompt: 0 for prompt in final_codes}
    checked = 0
    for call in spy.calls:
        for prompt, prompt_codes, new_frames in call:
            p = prompt_codes.shape[-1]
            expected = final_codes[prompt][:, have[prompt] - p : have[prompt]]
            assert torch.equal(prompt_codes, expected)
            checked += p > 0
            have[prompt] += new_frames
    assert checked >= 6
    codes = list(final_codes.values())
    assert not torch.equal(codes[0][:, :100], codes[1][:, :100])


def test_a_song_failing_mid_batch_does_not_lose_the_others(tiny_engine):
    spy = SpyEngine(tiny_engine, fail_words=["song 1 "], fail_after_windows=1)
    done, failed = run(spy, make_songs(spy, [11, 9, 7]))
    assert sorted(done) == ["s0.wav", "s2.wav"]
    assert list(failed) == ["s1.wav"] and "injected fault" in str(failed["s1.wav"])
    for name, duration in [("s0.wav", 11), ("s2.wav", 7)]:
        assert done[name][1].shape == (duration * 8000,)


def test_generation_times_add_up_to_the_engines_busy_time(tiny_engine):
    spy = SpyEngine(tiny_engine)
    done, _ = run(spy, make_songs(spy, [11, 3, 6]), batch_size=2)
    total = sum(song.generation_time_s for song, _ in done.values())
    assert abs(total - spy.busy_s) <= 0.05 * spy.busy_s + 0.05
    assert all(song.generation_time_s > 0 for song, _ in done.values())


def test_a_song_resumed_with_every_window_done_is_only_decoded(tiny_engine):
    spy = SpyEngine(tiny_engine)
    (song,) = make_songs(spy, [3])
    song.codes = torch.randint(0, 64, (4, song.total_frames))
    song.next_window = len(song.plans)
    done, failed = run(spy, [song])
    assert failed == {} and spy.calls == []
    assert done["s0.wav"][1].shape == (3 * 8000,)


def test_a_base_seed_gives_each_file_name_its_own_reproducible_seed():
    jobs = [Job(1, "p", 5, "cinematic_trailer_a.wav"), Job(2, "p", 5, "cinematic_trailer_b.wav")]
    seeds = [song_seed(42, job) for job in jobs]
    assert seeds[0] != seeds[1]
    assert seeds == [song_seed(42, job) for job in jobs]
    assert song_seed(43, jobs[0]) != seeds[0]


def test_a_seeded_songs_seed_does_not_depend_on_its_format():
    wav, flac, other = Job(1, "p", 1, "calm.wav"), Job(1, "p", 1, "calm.flac"), Job(1, "p", 1, "calm.Flac")
    assert song_seed(42, wav) == song_seed(42, flac) == song_seed(42, other)
    assert song_seed(42, wav) != song_seed(42, Job(1, "p", 1, "calm2.flac"))


def test_importing_the_scheduler_loads_neither_torch_nor_transformers():
    code = (
        "import sys, worker.run.scheduler; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout == "[]\n"


def test_a_new_song_has_its_exact_length_and_its_windows_before_the_first_one():
    codec = FakeEngine()  # 8000 Hz, 50 frames/s, 160 samples a frame, 2 codebooks
    song = new_song(Job(1, "p", 11, "a.wav"), 7, WINDOW, codec)
    assert (song.seed, song.num_samples, song.next_window) == (7, 88_000, 0)
    # 550 frames: a first window of 4 s, then 2.5 s steps prompted with the last 1.5 s.
    assert song.plans == [WindowPlan(0, 200), WindowPlan(75, 125), WindowPlan(75, 125), WindowPlan(75, 100)]
    assert song.codes.shape == (2, 0) and song.codes.dtype == torch.long
    assert song.state is SongState.WAITING and song.conditioning is None
    # A song shorter than a frame still gets one frame and its exact sample count.
    short = new_song(Job(1, "p", 0.001, "b.wav"), 7, WINDOW, codec)
    assert (short.num_samples, short.plans) == (8, [WindowPlan(0, 1)])


class FailingFakeEngine(FakeEngine):
    def condition(self, prompt):
        if "broken" in prompt:
            raise RuntimeError("cannot encode")
        return super().condition(prompt)


def test_each_song_leaves_the_batch_in_the_state_that_says_why():
    engine = FailingFakeEngine()
    jobs = [Job(1, "fine", 6, "kept.wav"), Job(2, "broken", 6, "bad.wav"), Job(3, "fine", 6, "taken.wav")]
    songs = [new_song(job, 1, WINDOW, engine) for job in jobs]
    delivered, failed = [], []
    callbacks = Callbacks(
        on_window=lambda song: song.job.file_name != "taken.wav" or song.next_window < 2,
        on_done=lambda song, audio: delivered.append(song.job.file_name),
        on_failed=lambda song, error: failed.append(song.job.file_name),
    )
    assert BatchScheduler(engine, 3, callbacks).run(songs) == []
    assert (delivered, failed) == (["kept.wav"], ["bad.wav"])
    assert [song.state for song in songs] == [SongState.DELIVERED, SongState.FAILED, SongState.TAKEN_OVER]
    assert all(song.conditioning is None and not song.in_batch for song in songs)
    # The song taken over stopped after the window another worker resumes from.
    assert songs[2].next_window == 2


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_stop_hands_back_the_songs_in_the_batch_and_those_still_waiting(batch_size):
    engine = FakeEngine()
    songs = [new_song(Job(i, "p", 6, f"s{i}.wav"), i, WINDOW, engine) for i in range(3)]
    windows = []
    callbacks = Callbacks(
        on_window=lambda song: windows.append(song.job.file_name) is None,
        should_stop=lambda: len(windows) >= batch_size,
    )
    unfinished = BatchScheduler(engine, batch_size, callbacks).run(songs)
    assert sorted(song.job.file_name for song in unfinished) == ["s0.wav", "s1.wav", "s2.wav"]
    in_batch = [song for song in unfinished if song.in_batch]
    assert len(in_batch) == batch_size
    assert all(song.next_window == 1 and song.conditioning is not None for song in in_batch)
    assert all(song.state is SongState.WAITING for song in unfinished if song not in in_batch)


def test_the_longest_song_left_is_claimed_first():
    """Claims in order of frames still to generate, longest first, also between songs of the
    same number of windows (5 s and 6 s are two windows each here), so the batch's tail, the
    song a worker finishes last, is a short one."""
    engine = FakeEngine()
    songs = make_songs(engine, [5, 1, 6, 12])
    claimed = []

    def claim(song):
        claimed.append(song.job.duration_s)
        return True

    assert len(songs[0].plans) == len(songs[2].plans) == 2
    BatchScheduler(engine, 1, Callbacks(claim=claim)).run(songs)
    assert claimed == [12, 6, 5, 1]

"""Batched long-form generation: lengths, continuation prompts, failures and time shares."""

import torch

from tests.engines import SpyEngine
from worker.prompts import Job
from worker.runner import Runner, song_seed
from worker.scheduler import BatchScheduler, Callbacks
from worker.settings import RunSettings
from worker.store import LocalStore
from worker.windows import WindowSettings

SETTINGS = RunSettings(model="tiny", hourly_cost_usd=1.0, batch_size=3, window=WindowSettings(4, 2.5), seed=42)


def make_songs(engine, durations, tmp_path):
    runner = Runner(SETTINGS, LocalStore(tmp_path))
    jobs = [Job(i + 1, f"song {i} piano", d, f"s{i}.wav") for i, d in enumerate(durations)]
    return [runner.new_song(job, engine) for job in jobs]


def run(engine, songs, batch_size=3):
    done, failed = {}, {}
    callbacks = Callbacks(
        on_done=lambda song, audio: done.__setitem__(song.job.file_name, (song, audio)),
        on_failed=lambda song, error: failed.__setitem__(song.job.file_name, error),
    )
    BatchScheduler(engine, batch_size, callbacks).run(songs)
    return done, failed


def test_songs_of_different_lengths_share_batches_and_each_gets_its_exact_length(tiny_engine, tmp_path):
    spy = SpyEngine(tiny_engine)
    durations = [11, 1.5, 6.02, 4, 0.3]
    done, failed = run(spy, make_songs(spy, durations, tmp_path))
    assert failed == {}
    for i, duration in enumerate(durations):
        song, audio = done[f"s{i}.wav"]
        assert audio.shape == (round(duration * 8000),)
        assert song.codes.shape[-1] == song.total_frames
    assert max(len(call) for call in spy.calls) == 3
    # 5 songs, 3 slots: the two waiting songs joined as soon as the first batch freed up.
    assert len(spy.calls) < sum(len(s.plans) for s, _ in done.values())


def test_each_window_is_prompted_with_its_own_songs_last_codes(tiny_engine, tmp_path):
    spy = SpyEngine(tiny_engine)
    done, _ = run(spy, make_songs(spy, [11, 9, 7], tmp_path))
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


def test_a_song_failing_mid_batch_does_not_lose_the_others(tiny_engine, tmp_path):
    spy = SpyEngine(tiny_engine, fail_words=["song 1 "], fail_after_windows=1)
    done, failed = run(spy, make_songs(spy, [11, 9, 7], tmp_path))
    assert sorted(done) == ["s0.wav", "s2.wav"]
    assert list(failed) == ["s1.wav"] and "injected fault" in str(failed["s1.wav"])
    for name, duration in [("s0.wav", 11), ("s2.wav", 7)]:
        assert done[name][1].shape == (duration * 8000,)


def test_generation_times_add_up_to_the_engines_busy_time(tiny_engine, tmp_path):
    spy = SpyEngine(tiny_engine)
    done, _ = run(spy, make_songs(spy, [11, 3, 6], tmp_path), batch_size=2)
    total = sum(song.generation_time_s for song, _ in done.values())
    assert abs(total - spy.busy_s) <= 0.05 * spy.busy_s + 0.05
    assert all(song.generation_time_s > 0 for song, _ in done.values())


def test_a_song_resumed_with_every_window_done_is_only_decoded(tiny_engine, tmp_path):
    spy = SpyEngine(tiny_engine)
    (song,) = make_songs(spy, [3], tmp_path)
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

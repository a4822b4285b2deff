"""Mastering (loudness, limiter, fade, non-finite audio) and the files it writes, tags included."""

import math

import numpy as np
import pyloudnorm
import pytest
import soundfile

from worker.output.audio import (
    Mastered,
    db_to_gain,
    fade_length,
    fade_out,
    limit_peaks,
    master,
    measure_loudness,
    normalise_loudness,
    require_finite,
    song_comment,
    write_song,
)
from worker.settings import MasteringSettings

RATE = 32000
CEILING = db_to_gain(-1.0)


def sine(seconds, amplitude, freq=440.0, rate=RATE):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pink_noise(seconds, amplitude, rate=RATE, seed=0):
    """1/f noise (Voss-McCartney's spectrum, shaped in the frequency domain)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (amplitude * noise / np.abs(noise).max()).astype(np.float32)


def pyloudnorm_lufs(samples, rate=RATE):
    return pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64))


@pytest.mark.parametrize(
    "signal",
    [
        sine(10, 0.05),  # about -29 LUFS: needs gain
        sine(10, 0.8, freq=1000),  # about -5 LUFS: needs attenuation
        pink_noise(10, 0.1),
        pink_noise(10, 0.9, seed=1),
        np.stack([sine(10, 0.05), pink_noise(10, 0.2)], axis=1),  # stereo
    ],
    ids=["quiet-sine", "loud-sine", "quiet-pink", "loud-pink", "stereo"],
)
@pytest.mark.parametrize("target", [-14.0, -23.0])
def test_normalised_loudness_is_the_target_by_pyloudnorms_own_measure(signal, target):
    measured_before = pyloudnorm_lufs(signal)
    song = master(signal, RATE, MasteringSettings(loudness_lufs=target, fade_out_s=0))
    assert song.measured_lufs == pytest.approx(measured_before)
    assert song.gain_db == pytest.approx(target - measured_before)
    assert abs(pyloudnorm_lufs(song.samples) - target) <= 0.5
    assert np.abs(song.samples).max() <= CEILING
    assert song.clipped_samples == 0
    assert song.samples.shape == signal.shape and song.samples.dtype == signal.dtype


def test_the_limiter_holds_the_peak_at_minus_1_dbfs_and_leaves_the_rest():
    quiet = sine(4, 0.3)
    spiky = quiet.copy()
    spiky[RATE * 2] = 3.0  # one wild sample at +9.5 dBFS
    spiky[RATE * 3 : RATE * 3 + 200] *= 4  # a loud burst
    out, limited = limit_peaks(spiky, RATE)
    assert np.abs(out).max() <= CEILING
    assert 0 < limited < RATE // 4
    # Far from the peaks nothing changes; near them the gain already dips ahead of the peak.
    np.testing.assert_array_equal(out[: RATE], spiky[: RATE])
    assert abs(out[RATE * 2 - 20]) < abs(spiky[RATE * 2 - 20]) or spiky[RATE * 2 - 20] == 0
    untouched, none = limit_peaks(quiet, RATE)
    assert untouched is quiet and none == 0


@pytest.mark.parametrize("rate", [8000, 32000, 44100])
def test_the_limiter_holds_the_ceiling_on_loud_noise_in_stereo(rate):
    loud = np.stack([pink_noise(3, 4.0, rate), pink_noise(3, 2.0, rate, seed=5)], axis=1)
    out, limited = limit_peaks(loud, rate)
    assert np.abs(out).max() <= CEILING
    assert limited > 0
    # Linked channels: both are turned down by the same gain, so the stereo image stays.
    ratio = out / np.where(loud == 0, 1, loud)
    np.testing.assert_allclose(ratio[:, 0], ratio[:, 1], rtol=1e-5)


def test_off_keeps_the_samples_and_writes_todays_bytes(tmp_path):
    raw = pink_noise(2, 1.3)  # beyond full scale, as a raw decoder output can be
    song = master(raw, RATE, MasteringSettings(loudness_lufs=None, fade_out_s=0))
    assert song.samples is raw
    assert song.measured_lufs == pytest.approx(pyloudnorm_lufs(raw))
    assert (song.gain_db, song.limited_samples) == (0.0, 0)
    assert song.clipped_samples == int(np.count_nonzero(np.abs(raw) > 1))
    today = tmp_path / "today.wav"
    soundfile.write(today, np.clip(raw, -1.0, 1.0), RATE, subtype="PCM_16", format="WAV")
    now = tmp_path / "now.wav"
    write_song(now, song.samples, RATE)
    assert now.read_bytes() == today.read_bytes()
    tagged = tmp_path / "tagged.wav"
    write_song(tagged, song.samples, RATE, title="t", comment="c")
    np.testing.assert_array_equal(
        soundfile.read(tagged, dtype="int16")[0], soundfile.read(today, dtype="int16")[0]
    )


@pytest.mark.parametrize(
    ("seconds", "fade_s", "expected_s"),
    [(1, 3, 0.25), (10, 3, 2.5), (200, 3, 3.0), (200, 0.5, 0.5), (10, 0, 0)],
)
def test_the_fade_is_at_most_a_quarter_of_the_song_and_falls_monotonically(seconds, fade_s, expected_s):
    rate = 8000
    song = np.ones(seconds * rate)
    n = fade_length(song.shape[0], rate, fade_s)
    assert n == round(expected_s * rate)
    out = fade_out(song, rate, fade_s)
    assert out.shape == song.shape  # exact frame count kept
    np.testing.assert_array_equal(out[: song.shape[0] - n], song[: song.shape[0] - n])
    if n:
        tail = out[-n:]
        assert np.all(np.diff(tail) < 0) and tail[0] < 1
        assert tail[-1] == pytest.approx(0, abs=1e-6)
        # Equal power: half way through the fade the gain is cos(pi/4), -3 dB.
        assert tail[n // 2 - 1] == pytest.approx(math.cos(math.pi / 4), abs=2 / n)


def test_the_fade_treats_stereo_channels_alike_and_mastering_fades_before_measuring():
    stereo = np.stack([sine(8, 0.5), sine(8, 0.25)], axis=1)
    faded = fade_out(stereo, RATE, 2)
    np.testing.assert_allclose(faded[:, 0], 2 * faded[:, 1], atol=1e-7)
    song = master(stereo, RATE, MasteringSettings(loudness_lufs=-14, fade_out_s=2))
    assert song.measured_lufs == pytest.approx(pyloudnorm_lufs(faded))
    assert song.samples.shape == stereo.shape and abs(song.samples[-1]).max() < 1e-6


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_is_refused(bad):
    samples = sine(1, 0.5)
    samples[100] = bad
    with pytest.raises(ValueError, match="1 non-finite samples"):
        require_finite(samples)
    with pytest.raises(ValueError, match="non-finite"):
        master(samples, RATE, MasteringSettings(loudness_lufs=None, fade_out_s=0))


def test_too_short_or_silent_audio_is_not_normalised():
    short = sine(0.2, 0.5)
    assert measure_loudness(short, RATE) is None
    out, measured, gain = normalise_loudness(short, RATE, -14)
    assert out is short and measured is None and gain == 0.0
    silent = np.zeros(RATE * 2, dtype=np.float32)
    song = master(silent, RATE, MasteringSettings())
    assert isinstance(song, Mastered) and song.measured_lufs is None
    assert not song.samples.any()


@pytest.mark.parametrize("audio_format", ["wav", "flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_files_round_trip_with_their_tags(tmp_path, audio_format, channels):
    samples = pink_noise(1, 0.7)
    if channels == 2:
        samples = np.stack([samples, -samples], axis=1)
    comment = song_comment("calm piano; rain — ünïcode", {"seed": 42, "model": "m"}, audio_format)
    path = tmp_path / f"song.{audio_format}"
    write_song(path, samples, RATE, audio_format, title="song", comment=comment)
    with soundfile.SoundFile(path) as f:
        assert (f.format, f.subtype, f.channels, f.samplerate, f.frames) == (
            audio_format.upper(), "PCM_16", channels, RATE, RATE,
        )
        assert f.title == "song"
        assert f.comment == "seed=42; model=m; prompt: calm piano; rain — ünïcode"


def test_flac_holds_the_same_16_bit_samples_in_about_half_the_size(tmp_path):
    samples = sine(5, 0.5) + pink_noise(5, 0.05)
    write_song(tmp_path / "a.wav", samples, RATE, "wav")
    write_song(tmp_path / "a.flac", samples, RATE, "flac")
    wav, _ = soundfile.read(tmp_path / "a.wav", dtype="int16")
    flac, _ = soundfile.read(tmp_path / "a.flac", dtype="int16")
    np.testing.assert_array_equal(wav, flac)
    assert (tmp_path / "a.flac").stat().st_size < 0.8 * (tmp_path / "a.wav").stat().st_size


def test_a_long_prompt_is_cut_to_fit_a_wav_info_string_but_not_in_flac(tmp_path):
    prompt = "é" * 1990
    wav_comment = song_comment(prompt, {"seed": 1}, "wav")
    assert len(wav_comment.encode()) <= 2000 and wav_comment.endswith("…")
    assert song_comment(prompt, {"seed": 1}, "flac").endswith("é" * 1990)
    write_song(tmp_path / "long.wav", sine(1, 0.1), RATE, "wav", comment=wav_comment)
    assert soundfile.SoundFile(tmp_path / "long.wav").comment == wav_comment

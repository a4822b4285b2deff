"""What a listener gets: audio files, waveforms, the cost report and the listening page."""

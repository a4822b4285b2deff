"""musicgen-batch worker: prompts.txt in, long-form MusicGen songs and cost_report.csv out."""

"""What the launcher and the worker agree on: the output's layout (bucket), the records kept in
it (records), the rules applied to them (policy), the prompts file (prompts), the stored songs
(songs), the shared defaults and bounds (defaults) and how AWS is called (aws). Torch-free, and
importing neither the worker nor the launcher (pyproject.toml's import contracts)."""

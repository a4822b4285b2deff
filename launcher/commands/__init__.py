"""The launcher's commands, one module each: launch (the default), status and download."""

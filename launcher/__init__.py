"""Launcher: checks for running workers, shows spot prices and the batch estimate, then applies terraform."""

"""The end-to-end runs' model loader: the real tiny engine, made to fail the songs whose prompt
says "fail", and the window settings those runs use."""

from tests.engines import SpyEngine

WINDOW = ["--window-s", "4", "--stride-s", "2.5", "--hourly-cost", "0.5", "--batch-size", "2"]


class Loader:
    """load_engine seam: the tiny engine the test process loaded once (the `loaded_tiny_engine`
    fixture), standing for the model folder the run names, wrapped to fail one song."""

    def __init__(self, engine):
        self.engine = engine
        self.spies = []

    def __call__(self, model):
        spy = SpyEngine(self.engine, fail_words=["fail"], fail_after_windows=0)
        self.spies.append(spy)
        return spy

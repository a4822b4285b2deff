"""The end-to-end runs' model loader: the real tiny engine, made to fail the songs whose prompt
says "fail", and the window settings those runs use."""

from tests.engines import SpyEngine
from worker.engine import Engine

WINDOW = ["--window-s", "4", "--stride-s", "2.5", "--hourly-cost", "0.5", "--batch-size", "2"]


class Loader:
    """load_engine seam: the real engine from disk, wrapped to fail one song."""

    def __init__(self):
        self.spies = []

    def __call__(self, model):
        spy = SpyEngine(Engine.from_pretrained(model), fail_words=["fail"], fail_after_windows=0)
        self.spies.append(spy)
        return spy

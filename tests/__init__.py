"""The test suite. See docs/testing.md."""

import os
from pathlib import Path

# moto registers ~1,400 public AMIs (amis.json, the latest and the ECS-optimized AMIs of the
# region) whenever a region's EC2 backend starts, after every reset: most of a launcher test's
# CPU. The tests use one of them (MOTO_AMI in tests/support/autoscaling.py). moto reads this
# when it is imported, so it is set here, before a conftest imports moto; the moto server
# processes inherit it.
os.environ.setdefault("MOTO_AMIS_PATH", str(Path(__file__).with_name("moto_amis.json")))

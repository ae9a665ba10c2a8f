"""The Tessera load-test harness: simulated users and devices against a running cluster.

``python -m loadtest --profile small --out DIR`` (or ``tessera-loadtest``) runs one bounded
load and writes ``report.json``, ``samples.csv`` and PNG plots; ``docs/loadtest.md`` explains
the model, the figures and why the harness is asyncio-native rather than Locust.

    report = await run(Target(endpoint, admin_token), PROFILES["small"], Path("out"))
"""

from loadtest.profiles import PROFILES, OpMix, Profile, get_profile
from loadtest.runner import SetupError, Target, UserSpec, run

__all__ = ["PROFILES", "OpMix", "Profile", "SetupError", "Target", "UserSpec", "get_profile", "run"]

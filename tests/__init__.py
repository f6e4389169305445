"""dialgw's tests, run with trial (``make test``)."""

import os

# Hypothesis keeps its state (example database, caches) in the directory
# this names. A relative path is resolved when Hypothesis first writes, which
# is while a test runs, in trial's temp directory (_trial_temp, or
# _trial_temp/N with --jobs): the work tree stays clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", ".hypothesis")

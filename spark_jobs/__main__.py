"""``python -m spark_jobs preferences|authors --config ... --start ... --end ...``."""

import sys

from spark_jobs.submit import main

sys.exit(main())

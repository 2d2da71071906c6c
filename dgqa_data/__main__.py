"""``python -m dgqa_data VERB ...``: the data verbs without the model stack (see :mod:`dgqa_data.cli`)."""

import sys

from dgqa_data.cli import main

sys.exit(main())

"""`python -m tests.mockserver [options]`: the same as `kadn mock-douban` from a source checkout."""

import sys

from pipeline.cli import main

sys.exit(main(["mock-douban", *sys.argv[1:]]))

"""`python -m crawler.mocksite [options]`: the same as `kadn mock-douban`."""

import sys

from pipeline.cli import main

sys.exit(main(["mock-douban", *sys.argv[1:]]))

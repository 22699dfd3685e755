"""Generate with or without GNA; the same as `gna-diffusers generate` (see --help)."""

import sys

from gna_diffusers.cli import main

sys.exit(main(["generate", *sys.argv[1:]]))

"""Speed/fidelity comparison; the same as `gna-diffusers compare` (see --help)."""

import sys

from gna_diffusers.cli import main

sys.exit(main(["compare", *sys.argv[1:]]))

"""`python -m diffsynth_dualcam.app`: the same as `dualcam app` (an entry point: run, never imported)."""
import sys

from diffsynth_dualcam.cli import main

sys.exit(main(["app", *sys.argv[1:]]))

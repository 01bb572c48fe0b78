import sys

from diffsynth_dualcam.cli import main

sys.exit(main())

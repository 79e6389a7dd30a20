import sys

from mmsent.cli import main

sys.exit(main())

import sys

from caffezoo.cli import main

sys.exit(main())

import sys

from weightzoo.cli import main

sys.exit(main())

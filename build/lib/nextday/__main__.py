import sys

from nextday.cli import main

sys.exit(main())

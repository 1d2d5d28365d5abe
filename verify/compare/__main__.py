import sys

from verify.compare.cli import main

sys.exit(main())

import sys

from picmetric.interfaces.cli import main

sys.exit(main())
